"""Find faces with MediaPipe Tasks' FaceDetector; run by tests/test_export.py in the MediaPipe venv.

    python tests/mediapipe_detect.py MODEL.tflite IMAGE [IMAGE ...]

Prints one JSON object: {"mediapipe": version, "boxes": {image: [[x1, y1, x2, y2, score], ...]}}, boxes in the
image's pixels as MediaPipe reports them (origin, width, height). Imports only MediaPipe, NumPy and Pillow
(never maskclf, which needs the other venv).
"""

import json
import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import FaceDetector, FaceDetectorOptions
from PIL import Image


def main(argv):
    opts = FaceDetectorOptions(base_options=BaseOptions(model_asset_path=argv[0]), min_detection_confidence=0.5,
                               min_suppression_threshold=0.3)
    out = {}
    with FaceDetector.create_from_options(opts) as det:
        for path in argv[1:]:
            rgb = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
            found = det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)).detections
            boxes = [d.bounding_box for d in found]
            out[path] = [[b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height, d.categories[0].score]
                         for b, d in zip(boxes, found)]
    print(json.dumps({"mediapipe": mp.__version__, "boxes": out}))


if __name__ == "__main__":
    main(sys.argv[1:])
