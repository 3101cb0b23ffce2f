"""Draw classified faces and an FPS counter on frames (OpenCV; no TensorFlow).

Mask classes get fixed colours whatever the spelling of the dataset: green = with mask,
red = without mask, orange = mask worn incorrectly. Any other label set gets distinct colours
in labels.txt order.
"""

from __future__ import annotations

import colorsys
from typing import Iterable, Sequence

import numpy as np

from maskclf.edge.detector import intersection

GREEN, RED, ORANGE = (0, 200, 0), (230, 0, 0), (255, 140, 0)
# Distinct from the three mask colours and from each other (RGB).
PALETTE = [(0, 110, 255), (230, 0, 230), (0, 200, 210), (250, 215, 0), (140, 60, 220), (140, 80, 20),
           (255, 110, 180), (120, 130, 0), (0, 120, 120), (0, 0, 140)]


def mask_kind(label: str) -> str | None:
    """``with``, ``without``, ``incorrect`` for the usual spellings of the mask classes, else None.

    >>> [mask_kind(n) for n in ("with_mask", "WithoutMask", "mask_weared_incorrect", "cat")]
    ['with', 'without', 'incorrect', None]
    """
    s = "".join(c for c in label.lower() if c.isalnum())
    if "incorrect" in s or "improper" in s or "wrong" in s:
        return "incorrect"
    if s.startswith(("without", "nomask", "unmask")) or s in ("nofacemask", "bare"):
        return "without"
    if s in ("withmask", "mask", "masked", "withfacemask", "facemask"):
        return "with"
    return None


def _extra_color(i: int) -> tuple[int, int, int]:
    if i < len(PALETTE):
        return PALETTE[i]
    # Beyond the palette: hues spread by the golden angle, skipping the greens, reds and oranges.
    h = (0.17 + i * 0.618034) % 1.0
    h = 0.45 + h * 0.45  # 0.45..0.90: cyan, blue, violet, magenta
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def label_colors(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """An RGB colour per class name: the mask colours where the name is a mask class, else distinct ones."""
    fixed = {"with": GREEN, "without": RED, "incorrect": ORANGE}
    out, extra, used = {}, 0, set()
    for name in labels:
        kind = mask_kind(name)
        if kind and fixed[kind] not in used:
            out[name] = fixed[kind]
        else:
            out[name] = _extra_color(extra)
            extra += 1
        used.add(out[name])
    return out


def _color_of(label: str, colors: dict) -> tuple[int, int, int]:
    if label in colors:
        return colors[label]
    kind = mask_kind(label)
    if kind:
        return {"with": GREEN, "without": RED, "incorrect": ORANGE}[kind]
    return _extra_color(sum(map(ord, label)) % len(PALETTE))  # stable across runs, unlike hash()


def _text_color(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _style(shape) -> tuple[int, float, int]:
    """Box thickness, font scale and text thickness for a frame size."""
    side = max(shape[0], shape[1])
    thickness = max(2, int(round(side / 400)))
    scale = max(0.45, side / 1400)
    return thickness, scale, max(1, int(round(scale * 1.6)))


def _tag_size(text: str, scale: float, weight: int) -> tuple[int, int]:
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
    return tw + 2 * _PAD, th + base + 2 * _PAD


_PAD = 3


def tag_name(label: str) -> str:
    """The short text a tag shows: "mask", "no mask", "incorrect" for the mask classes, else the label.

    >>> [tag_name(n) for n in ("with_mask", "without_mask", "mask_weared_incorrect", "cat")]
    ['mask', 'no mask', 'incorrect', 'cat']
    """
    return {"with": "mask", "without": "no mask", "incorrect": "incorrect"}.get(mask_kind(label) or "", label)


def _place(size: tuple[int, int], box: tuple[int, int, int, int], shape, taken: list,
           faces: Sequence = ()) -> tuple[int, int] | None:
    """Top-left corner of a tag: above the box, else below it, else inside its top, else stacked further
    up or down, else beside; the first spot that covers no tag drawn before and no other face (crowd photos).
    None when every spot would: the box's colour alone then says its class (and a legend is drawn)."""
    (w, h), (x1, y1, _, y2) = size, box
    H, W = shape[:2]
    if w > W or h > H:
        return None
    spots = [(x1, y1 - h), (x1, y2), (x1, y1)]
    for k in range(1, 4):
        spots += [(x1, y1 - h - k * h), (x1, y2 + k * h), (x1 - w // 2, y1 - h), (x1 + w // 2, y1 - h)]
    for x, y in spots:
        x, y = max(0, min(x, W - w)), max(0, min(y, H - h))
        r = (x, y, x + w, y + h)
        if not any(intersection(r, t) for t in taken) and not any(intersection(r, f) for f in faces):
            return x, y
    return None


def _draw_tag(img: np.ndarray, text: str, x: int, y: int, fill, scale: float, weight: int, bgr: bool) -> None:
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
    fg = _text_color(fill)
    if bgr:
        fill, fg = fill[::-1], fg[::-1]
    cv2.rectangle(img, (x, y), (x + tw + 2 * _PAD, y + th + base + 2 * _PAD), fill, -1)
    cv2.putText(img, text, (x + _PAD, y + _PAD + th), cv2.FONT_HERSHEY_SIMPLEX, scale, fg, weight, cv2.LINE_AA)


def _draw_legend(img: np.ndarray, names: list[str], colors: dict, boxes: list, scale: float, weight: int,
                 bgr: bool) -> None:
    """One tag per class, stacked in the corner that covers the fewest faces."""
    sizes = [_tag_size(tag_name(n), scale, weight) for n in names]
    w, h = max(s[0] for s in sizes), sum(s[1] for s in sizes)
    H, W = img.shape[:2]
    corners = [(0, H - h), (W - w, H - h), (W - w, 0), (0, 0)]
    x, y = min(corners, key=lambda c: sum(intersection((c[0], c[1], c[0] + w, c[1] + h), b) for b in boxes))
    for n, (_, th) in zip(names, sizes):
        _draw_tag(img, tag_name(n), max(0, x), max(0, y), _color_of(n, colors), scale, weight, bgr)
        y += th


def draw_faces(image: np.ndarray, faces: Iterable, labels: Sequence[str] | None = None, bgr: bool = False,
               copy: bool = True, show_score: bool = True) -> np.ndarray:
    """Boxes coloured by class, each with a "name score" tag where one fits without covering another face.

    Tags say "mask", "no mask" or "incorrect" for the mask classes (:func:`tag_name`), else the label. In a
    crowd, a face whose tag would cover another face or tag keeps its coloured box only, and a legend of the
    classes drawn goes in the corner with the fewest faces.

    Args:
        image: the frame (H, W, 3) uint8, RGB (or BGR with ``bgr=True``, as OpenCV video frames are).
        faces: :class:`~maskclf.edge.classifier.Face` objects (``box``, ``label``, ``score``).
        labels: the model's class names (labels.txt order), so colours are stable for unknown label sets.
        copy: draw on a copy (default) or in place.

    Returns:
        The annotated frame, same size and channel order.
    """
    import cv2

    img = np.array(image, np.uint8, copy=True) if copy else image
    faces = list(faces)
    present = {f.label for f in faces}
    order = list(labels) if labels else sorted(present)
    colors = label_colors(order)
    thickness, scale, weight = _style(img.shape)
    t = thickness // 2
    boxes = [tuple(int(round(v)) for v in f.box[:4]) for f in faces]
    grown = [(x1 - t, y1 - t, x2 + t, y2 + t) for x1, y1, x2, y2 in boxes]  # with their lines
    # Boxes first, tags after, so no box line crosses a neighbour's tag.
    for f, (x1, y1, x2, y2) in zip(faces, boxes):
        c = _color_of(f.label, colors)
        cv2.rectangle(img, (x1, y1), (x2, y2), c[::-1] if bgr else c, thickness)
    taken: list = []
    tags, untagged = [], False
    for i in sorted(range(len(faces)), key=lambda i: -faces[i].score):  # the surest tags get the best spots
        f, box = faces[i], boxes[i]
        text = f"{tag_name(f.label)} {f.score:.2f}" if show_score else tag_name(f.label)
        size = _tag_size(text, scale, weight)
        spot = _place(size, (box[0] - t, box[1] - t, box[2], box[3] + t), img.shape, taken, grown[:i] + grown[i + 1:])
        if spot is None:
            untagged = True
            continue
        x, y = spot
        taken.append((x, y, x + size[0], y + size[1]))
        tags.append((text, x, y, size, box, _color_of(f.label, colors)))
    for text, x, y, size, box, color in tags:
        if y + size[1] < box[1] - thickness or y > box[3] + thickness:  # moved off its box: a leader line
            ty = y + size[1] if y < box[1] else y
            cx = min(max((box[0] + box[2]) // 2, x), x + size[0])
            cv2.line(img, (cx, ty), ((box[0] + box[2]) // 2, box[1] if y < box[1] else box[3]),
                     color[::-1] if bgr else color, 1, cv2.LINE_AA)
    for text, x, y, size, box, color in tags:  # tags last: no line crosses a tag
        _draw_tag(img, text, x, y, color, scale, weight, bgr)
    if untagged:
        _draw_legend(img, [n for n in order if n in present] + sorted(present - set(order)), colors, boxes, scale,
                     weight, bgr)
    return img


def draw_fps(image: np.ndarray, fps: float, extra: str = "", copy: bool = False) -> np.ndarray:
    """An "FPS 12.3" tag in the top-left corner (white on black), drawn in place by default."""
    img = np.array(image, np.uint8, copy=True) if copy else image
    _, scale, weight = _style(img.shape)
    text = f"FPS {fps:.1f}" + (f"  {extra}" if extra else "")
    _draw_tag(img, text, 0, 0, (0, 0, 0), scale * 1.2, weight + 1, bgr=False)
    return img
