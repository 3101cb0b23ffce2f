"""Stage 1, data: image files, Pascal VOC photos and class folders -> labelled face crops, splits, tf.data."""
