"""The device runtime: face detection (YuNet; MediaPipe's BlazeFace; Haar fallback), mask classification with an exported
.tflite model (ai-edge-litert), drawing, photo/video/camera processing and photo-level evaluation.

Needs only numpy, Pillow, ai-edge-litert and opencv-python-headless (``pip install 'maskclf[edge]'``);
never imports TensorFlow. Names load lazily, so ``import maskclf.edge`` costs nothing.

    from maskclf.edge import FaceClassifier, FaceMaskPipeline, create_detector
    pipe = FaceMaskPipeline(FaceClassifier("runs/RUN/export"), create_detector("yunet", upscale=2))
    for face in pipe.process(rgb_uint8).faces:
        print(face.box, face.label, face.score)
    result = pipe.process(bgr_frame, bgr=True)   # OpenCV frames as they are: no whole-frame conversion
"""

from __future__ import annotations

import importlib

_NAMES = {
    "FaceDetector": "detector", "YuNetDetector": "detector", "BlazeFaceDetector": "detector",
    "HaarDetector": "detector",
    "create_detector": "detector", "DETECTORS": "detector",
    "Face": "classifier", "FaceClassifier": "classifier",
    "draw_faces": "draw", "draw_fps": "draw", "label_colors": "draw",
    "FaceMaskPipeline": "app", "FrameResult": "app", "process_image": "app", "process_video": "app",
    "run_detect": "app",
    "evaluate_detection": "evaluation", "voc_ap": "evaluation",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"maskclf.edge.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'maskclf.edge' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
