"""Classify face crops with MediaPipe Tasks' ImageClassifier; run by tests/test_export.py in the MediaPipe venv.

    python tests/mediapipe_classify.py CROPS.npy MODEL.tflite [MODEL.tflite ...]

CROPS.npy holds (N, S, S, 3) uint8 RGB crops already at the model's size, so MediaPipe's resize is the identity.
Prints one JSON object: {"mediapipe": version, "models": {path: {"labels": [...], "scores": [[...] * N],
"top1": [...]}}} with labels and scores in the model's output order, as MediaPipe reads them from the metadata.
Imports only MediaPipe and NumPy (never maskclf, which needs the other venv).
"""

import json
import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions


def main(argv):
    crops = np.load(argv[0])
    out = {}
    for path in argv[1:]:
        opts = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path), max_results=-1)
        with ImageClassifier.create_from_options(opts) as clf:
            labels, scores, top1 = None, [], []
            for crop in crops:
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(crop))
                cats = clf.classify(image).classifications[0].categories  # sorted by score
                by_index = sorted(cats, key=lambda c: c.index)
                labels = [c.category_name for c in by_index]
                scores.append([float(c.score) for c in by_index])
                top1.append(cats[0].category_name)
        out[path] = {"labels": labels, "scores": scores, "top1": top1}
    print(json.dumps({"mediapipe": mp.__version__, "models": out}))


if __name__ == "__main__":
    main(sys.argv[1:])
