"""Paint face masks onto photos of bare faces: correctly worn, below the nose, or down on the chin.

The rare class of face-mask sets ("mask worn incorrectly": 3 % of the VOC faces) is where classifiers fail,
and generated look-alikes of its few images do not help (docs/BENCHMARKS.md section 5). Bare faces are
plentiful, and what separates the three classes is geometric: where the mask's top edge sits relative to the
nose and the mouth. This module finds a face's five landmarks with the shipped YuNet detector (eyes, nose
tip, mouth corners), then draws a mask polygon in the face's own frame (rotated with the eye line, scaled by
the eye distance) whose top edge is over the nose bridge (``correct``), just under the nose tip
(``nose_out``) or under the lips (``chin``), in a random colour and texture, antialiased and shaded. Each
source face can thus appear bare, masked and wrongly masked, which teaches the position cue rather than
"synthetic looks = rare class" (the MaskTheFace idea, Anwar & Raychowdhury 2020, without its templates).

Needs OpenCV (``pip install maskclf[edge]``) for the landmarks; the painting is Pillow + NumPy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from maskclf.files import MaskclfError, write_json

STYLES = ("correct", "nose_out", "chin")

# (RGB, probability weight): surgical blue and white are the most common masks, then black and cloth colours.
PALETTE = [((150, 195, 225), 4), ((235, 238, 240), 3), ((30, 30, 35), 3), ((120, 125, 130), 1),
           ((40, 60, 110), 1), ((230, 170, 190), 1), ((90, 120, 80), 1), ((200, 60, 60), 1)]


class LandmarkFinder:
    """The largest face's box and five landmarks (YuNet), on a border-padded copy so tight crops are found."""

    def __init__(self, score_threshold: float = 0.6):
        from maskclf.edge.detector import YuNetDetector

        self._det = YuNetDetector(score_threshold=score_threshold)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(box x1 y1 x2 y2, landmarks (5, 2): right eye, left eye, nose tip, right and left mouth corner)``
        in the image's pixels, or None when no face is found."""
        import cv2

        h, w = rgb.shape[:2]
        pad = int(0.3 * max(h, w))
        bgr = cv2.copyMakeBorder(np.ascontiguousarray(rgb[..., ::-1]), pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        scale = min(1.0, 640 / max(bgr.shape[:2]))
        if scale < 1:
            bgr = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA)
        faces = self._det.landmarks(bgr)
        if not len(faces):
            return None
        f = faces[np.argmax(faces[:, 2] * faces[:, 3])]
        box = np.array([f[0], f[1], f[0] + f[2], f[1] + f[3]], np.float32) / scale - pad
        marks = f[4:14].reshape(5, 2).astype(np.float32) / scale - pad
        return box, marks


def mask_polygon(marks: np.ndarray, style: str, rng: np.random.Generator, n: int = 24) -> np.ndarray:
    """The mask outline (N, 2) in image pixels for five landmarks: built in the face frame (origin between
    the eyes, x along the eye line, y down, unit = eye distance), then rotated and scaled onto the image."""
    if style not in STYLES:
        raise MaskclfError(f"mask style {style!r} is not one of {', '.join(STYLES)}")
    re_, le, nose, rm, lm = marks
    centre = (re_ + le) / 2
    d = float(np.linalg.norm(le - re_))
    if d < 2:
        raise MaskclfError("face too small to paint a mask on (eyes under 2 px apart)")
    ux = (le - re_) / d
    uy = np.array([-ux[1], ux[0]], np.float32)
    if np.dot(nose - centre, uy) < 0:  # keep y pointing from the eyes to the mouth
        uy = -uy

    def frame(p):
        q = p - centre
        return float(np.dot(q, ux)) / d, float(np.dot(q, uy)) / d

    nose_y = frame(nose)[1]
    mouth_y = (frame(rm)[1] + frame(lm)[1]) / 2
    chin_y = mouth_y + (mouth_y - nose_y) * rng.uniform(1.3, 1.7)
    half = rng.uniform(0.95, 1.15)  # half-width of the mask at the cheeks
    if style == "correct":
        top = nose_y * rng.uniform(0.35, 0.55)  # over the nose bridge
    elif style == "nose_out":
        top = nose_y + (mouth_y - nose_y) * rng.uniform(0.15, 0.45)  # nostrils and tip showing
    else:
        top = mouth_y + (chin_y - mouth_y) * rng.uniform(0.25, 0.55)  # lips showing, mask on the chin
    slide = max(0.0, top - nose_y * 0.45)  # a mask pulled down sits lower on the chin too
    bottom = chin_y + 0.15 + 0.5 * slide
    side_top = top + rng.uniform(0.15, 0.3)
    pts = []
    for i in range(n + 1):  # top edge: highest over the nose, falling towards the ears
        s = -half + 2 * half * i / n
        pts.append((s, top + (side_top - top) * abs(s / half) ** 1.6))
    for i in range(1, n):  # the jaw and chin: a half ellipse from cheek to cheek
        a = math.pi * i / n
        pts.append((half * 0.92 * math.cos(a), side_top + (bottom - side_top) * math.sin(a) ** 0.8))
    pts = np.array(pts, np.float32)
    return centre + d * (pts[:, :1] * ux + pts[:, 1:] * uy)


def paint_mask(image: Image.Image, marks: np.ndarray, style: str, rng: np.random.Generator) -> Image.Image:
    """``image`` (RGB) with a mask painted in ``style``: random colour, shading, optional pleats and ear loops."""
    poly = mask_polygon(marks, style, rng)
    w, h = image.size
    ss = 4  # supersampled alpha for smooth edges
    alpha = Image.new("L", (w * ss, h * ss), 0)
    ImageDraw.Draw(alpha).polygon([(float(x) * ss, float(y) * ss) for x, y in poly], fill=255)
    alpha = alpha.resize((w, h), Image.LANCZOS)
    d = float(np.linalg.norm(marks[1] - marks[0]))
    alpha = alpha.filter(ImageFilter.GaussianBlur(max(0.3, d * 0.015)))
    colours, weights = zip(*PALETTE)
    base = np.array(colours[rng.choice(len(colours), p=np.array(weights) / sum(weights))], np.float32)
    base = np.clip(base * rng.uniform(0.85, 1.1) + rng.normal(0, 8, 3), 0, 255)
    # shading: darker towards the mask's lower edge and sides, plus fine noise (fabric)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x0, y0 = poly[:, 0].min(), poly[:, 1].min()
    x1, y1 = poly[:, 0].max(), poly[:, 1].max()
    fy = np.clip((yy - y0) / max(1.0, y1 - y0), 0, 1)
    fx = np.abs(np.clip((xx - x0) / max(1.0, x1 - x0), 0, 1) - 0.5) * 2
    shade = 1.0 - 0.18 * fy - 0.15 * fx ** 2
    tex = base[None, None, :] * shade[..., None] + rng.normal(0, 4, (h, w, 1))
    if rng.random() < 0.5:  # pleats of a surgical mask: darker horizontal bands
        period = max(2.0, (y1 - y0) / rng.uniform(3, 5))
        pleat = 0.5 + 0.5 * np.cos(2 * np.pi * (yy - y0) / period)
        tex *= (1.0 - 0.12 * pleat ** 8)[..., None]
    rgb = np.asarray(image.convert("RGB"), np.float32)
    a = np.asarray(alpha, np.float32)[..., None] / 255.0
    out = rgb * (1 - a) + np.clip(tex, 0, 255) * a
    result = Image.fromarray(out.round().astype(np.uint8))
    if rng.random() < 0.5:  # ear loops from the mask's upper corners outwards
        draw = ImageDraw.Draw(result)
        loop = tuple(int(c) for c in np.clip(base * 0.9, 0, 255))
        for end, eye in ((poly[0], marks[0]), (poly[len(poly) // 2 - 1], marks[1])):
            out_dir = end - (marks[0] + marks[1]) / 2
            out_dir = out_dir / (np.linalg.norm(out_dir) + 1e-6)
            tip = end + out_dir * d * 0.35 - (end - eye) * 0.3
            draw.line([tuple(end), tuple(tip)], fill=loop, width=max(1, round(d * 0.04)))
    return result


def parse_styles(text: str) -> dict[str, str]:
    """``"correct=with_mask,nose_out=mask_weared_incorrect"`` -> ``{style: class folder}``."""
    styles = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        style, sep, cls = part.partition("=")
        style, cls = style.strip(), cls.strip()
        if not sep or style not in STYLES or not cls or "/" in cls or cls.startswith("."):
            raise MaskclfError(f"--styles {text!r}: expected STYLE=CLASS pairs with STYLE one of {', '.join(STYLES)} "
                               "and CLASS a folder name")
        styles[style] = cls
    if not styles:
        raise MaskclfError("--styles is empty: give at least one STYLE=CLASS pair")
    return styles


def paint_folder(sources: list[Path], out: Path, styles: dict[str, str], seed: int = 0,
                 min_eye_distance: float = 8.0, sheet: bool = True) -> dict:
    """For each source photo of a bare face and each ``style -> class folder`` in ``styles``, write
    ``out/<class>/<stem>-<style>.png`` (and ``out/contact_sheet.png``: sources beside their painted copies;
    ``out/paint.json``: the counts). Faces not found, faces with eyes under ``min_eye_distance`` px apart and
    unreadable files are skipped and counted. Each image is written under a temporary name, then renamed."""
    from maskclf.data.images import load_rgb

    finder = LandmarkFinder()
    rng = np.random.default_rng(seed)
    report = {"sources": len(sources), "no_face": 0, "too_small": 0, "unreadable": [],
              "written": {c: 0 for c in styles.values()}, "styles": styles, "seed": seed}
    for c in styles.values():
        (out / c).mkdir(parents=True, exist_ok=True)
    examples, used = [], set()
    for path in sources:
        try:
            img = load_rgb(path)
        except MaskclfError as e:
            report["unreadable"].append(str(e))
            continue
        found = finder(np.asarray(img))
        if found is None:
            report["no_face"] += 1
            continue
        _, marks = found
        if np.linalg.norm(marks[1] - marks[0]) < min_eye_distance:
            report["too_small"] += 1
            continue
        row, stem = [img], Path(path).stem
        while stem in used:  # the same file name in two source folders
            stem += "_"
        used.add(stem)
        for style, cls in styles.items():
            dst = out / cls / f"{stem}-{style}.png"
            tmp = dst.with_name(dst.name + ".tmp.png")
            painted = paint_mask(img, marks, style, rng)
            painted.save(tmp)
            tmp.replace(dst)
            report["written"][cls] += 1
            row.append(painted)
        if len(examples) < 8:
            examples.append(row)
    if sheet and examples:
        cell = 128
        grid = Image.new("RGB", (cell * len(examples[0]), cell * len(examples)), (255, 255, 255))
        for i, row in enumerate(examples):
            for j, im in enumerate(row):
                grid.paste(im.resize((cell, cell)), (j * cell, i * cell))
        tmp = out / "contact_sheet.tmp.png"
        grid.save(tmp)
        tmp.replace(out / "contact_sheet.png")
    write_json(out / "paint.json", report)
    return report


PAINT_SOURCE, PAINT_TARGET = "without_mask", "mask_weared_incorrect"
PAINT_VERSION = 1  # bump when painting changes, so cached painted crops are made again
NOSE_OUT_SHARE = 0.6  # of the painted "incorrect" copies; the rest have the mask on the chin


def paint_training_faces(ds, splits: list[str], share: float, seed: int = 0, progress: bool = False):
    """Add painted "mask worn incorrectly" copies of the training split's bare faces (``data.paint_train``).

    ``share`` of the training images of class ``without_mask`` (chosen at random with ``seed``) each get one
    copy with a mask painted below the nose (60 %) or on the chin (40 %), labelled ``mask_weared_incorrect``.
    Only training images are painted, so under cross-validation no validation or test face, nor a painted
    copy of one, is trained on. Small crops (VOC faces are ~20 px) are enlarged for the landmark detector and
    painted there, then shrunk back to their own size, so the copies look like the set's own faces. Painted
    crops are cached in the user cache folder (key: the crop's bytes, seed, painter version).

    Returns:
        A new (LabeledImages, splits) pair; the copies keep their source's photo group and are in ``train``.

    Raises:
        MaskclfError: the dataset lacks one of the two classes.
    """
    import hashlib

    from maskclf.files import atomic_path, cache_dir, file_digest
    from maskclf.data.images import load_rgb

    missing = [c for c in (PAINT_SOURCE, PAINT_TARGET) if c not in ds.class_names]
    if missing:
        raise MaskclfError(f"data.paint_train needs classes {PAINT_SOURCE} and {PAINT_TARGET}; {ds.root} has "
                           f"{', '.join(ds.class_names)} (rename with data.class_map, or set data.paint_train=0)")
    src, dst = ds.class_names.index(PAINT_SOURCE), ds.class_names.index(PAINT_TARGET)
    pool = [i for i, (y, s) in enumerate(zip(ds.labels, splits)) if y == src and s == "train"]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(pool, size=round(min(1.0, share) * len(pool)), replace=False).tolist()) if pool else []
    out, new_splits = ds.copy(), list(splits)
    folder = cache_dir("painted-crops")
    finder, no_face = None, 0
    for n, i in enumerate(chosen):
        key = hashlib.sha256(f"{file_digest(ds.paths[i])}|{seed}|{PAINT_VERSION}".encode()).hexdigest()[:24]
        path, miss = folder / key[:2] / f"{key}.png", folder / key[:2] / f"{key}.none"
        if miss.exists():
            no_face += 1
            continue
        if not path.exists():
            finder = finder or LandmarkFinder()
            img = load_rgb(ds.paths[i])
            up = max(1.0, 160 / max(img.size))  # YuNet needs ~40 px faces; VOC crops are smaller
            big = img.resize((round(img.width * up), round(img.height * up)), Image.BICUBIC) if up > 1 else img
            found = finder(np.asarray(big))
            path.parent.mkdir(parents=True, exist_ok=True)
            if found is None or np.linalg.norm(found[1][1] - found[1][0]) < 8:
                miss.touch()
                no_face += 1
                continue
            face_rng = np.random.default_rng(int(key[:12], 16))
            style = "nose_out" if face_rng.random() < NOSE_OUT_SHARE else "chin"
            painted = paint_mask(big, found[1], style, face_rng)
            if up > 1:
                painted = painted.resize(img.size, Image.LANCZOS)
            with atomic_path(path) as tmp:
                painted.save(tmp, format="PNG")
        out.add_training(new_splits, str(path), dst, ds.groups[i], ds.sources[i], ds.sizes[i],
                         ds.origins[i] if ds.origins else None)
        if progress and (n + 1) % 200 == 0:
            print(f"  painted {n + 1}/{len(chosen)} training faces", flush=True)
    added = len(out.paths) - len(ds.paths)
    out.notes[f"painted {PAINT_TARGET} copies of {PAINT_SOURCE} training faces (data.paint_train={share}; "
              f"{no_face} without landmarks), train split only"] = added
    return out, new_splits
