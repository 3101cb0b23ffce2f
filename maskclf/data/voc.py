"""Pascal VOC annotation parsing (defusedxml: annotation files may come from anywhere).

No TensorFlow here: the device-side detection evaluation uses it too.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from maskclf.files import MaskclfError

MAX_XML_BYTES = 5_000_000  # a VOC file is a few KB; refuse anything absurd before parsing


@dataclass(frozen=True)
class VocObject:
    """One annotated box: class name and pixel corners (as written, not yet clipped)."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False


@dataclass(frozen=True)
class VocAnnotation:
    """One annotation file: the image it describes and its boxes."""

    path: str
    filename: str
    width: int | None
    height: int | None
    objects: tuple[VocObject, ...] = field(default_factory=tuple)


def _text(node, tag: str) -> str | None:
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text is not None else None


def parse_voc(path: str | os.PathLike) -> VocAnnotation:
    """Parse one Pascal VOC XML file.

    Boxes with missing or non-numeric coordinates raise; geometry (inverted, negative,
    out-of-image boxes) is judged later, against the real image size.

    Raises:
        MaskclfError: malformed XML, entity tricks (billion laughs, external entities),
            missing fields; the message names the file.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise MaskclfError(f"{p}: cannot read annotation ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block the parser forever
        raise MaskclfError(f"{p}: not a regular file ({'a folder' if stat.S_ISDIR(st.st_mode) else 'a pipe or device'}); "
                           "remove it")
    size = st.st_size
    if size > MAX_XML_BYTES:
        raise MaskclfError(f"{p}: annotation is {size} bytes, far larger than a VOC file; remove it")
    try:
        root = SafeET.parse(str(p)).getroot()
    except DefusedXmlException as e:
        raise MaskclfError(f"{p}: refused unsafe XML ({type(e).__name__}: entities or DTDs are not allowed); "
                           "remove the file or strip its DTD") from None
    except SafeET.ParseError as e:
        raise MaskclfError(f"{p}: malformed XML ({e}); fix or remove the file") from None
    except OSError as e:
        raise MaskclfError(f"{p}: cannot read annotation ({e.strerror})") from None
    except (LookupError, ValueError) as e:  # <?xml encoding="..."?> names an unknown or multi-byte codec
        raise MaskclfError(f"{p}: unreadable XML encoding ({' '.join(str(e).split())}); "
                           "save the file as UTF-8") from None
    if root.tag != "annotation":
        raise MaskclfError(f"{p}: root element is <{root.tag}>, expected Pascal VOC <annotation>")
    filename = _text(root, "filename") or ""
    width = height = None
    size_node = root.find("size")
    if size_node is not None:
        try:
            width = int(float(_text(size_node, "width") or 0)) or None
            height = int(float(_text(size_node, "height") or 0)) or None
        except (ValueError, OverflowError):  # "abc", "nan", "inf"
            width = height = None  # the image itself tells the size
    objects = []
    for i, obj in enumerate(root.iter("object")):
        name = _text(obj, "name")
        box = obj.find("bndbox")
        if not name or box is None:
            raise MaskclfError(f"{p}: object {i} lacks <name> or <bndbox>; fix or remove the object")
        try:
            coords = [float(_text(box, t)) for t in ("xmin", "ymin", "xmax", "ymax")]
            if not all(math.isfinite(c) for c in coords):  # "nan"/"inf" parse as floats but are no corner
                raise ValueError
        except (TypeError, ValueError):
            raise MaskclfError(f"{p}: object {i} ({' '.join(name.split())}) has a missing or non-numeric "
                               "box corner") from None
        objects.append(VocObject(name, *coords, difficult=(_text(obj, "difficult") == "1")))
    return VocAnnotation(str(p), filename, width, height, tuple(objects))


def clip_box(obj: VocObject, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Clip a box to the image; None when it has no area inside the image (skip it)."""
    x1, y1, x2, y2 = obj.xmin, obj.ymin, obj.xmax, obj.ymax
    x1, x2 = max(0.0, min(x1, width)), max(0.0, min(x2, width))
    y1, y2 = max(0.0, min(y1, height)), max(0.0, min(y2, height))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return x1, y1, x2, y2


def find_image(images_dir: Path, ann: VocAnnotation) -> Path | None:
    """The image an annotation describes: its <filename>, else the same stem with any image suffix."""
    if ann.filename:
        cand = images_dir / Path(ann.filename).name
        if _is_file(cand):
            return cand
    stem = Path(ann.filename).stem if ann.filename else Path(ann.path).stem
    for s in (stem, Path(ann.path).stem):
        for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp", ".webp"):
            cand = images_dir / f"{s}{ext}"
            if _is_file(cand):
                return cand
    return None


def _is_file(p: Path) -> bool:
    # Path.is_file raises on a <filename> too long for the file system (or holding a NUL): no such image.
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False
