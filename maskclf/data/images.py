"""Image loading and face cropping without TensorFlow (shared by training and the device runtime).

Every image becomes 8-bit RGB whatever it was on disk: palette, grey, grey+alpha, RGBA,
CMYK, 16-bit, or a phone photo with an EXIF orientation tag.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from maskclf.files import MaskclfError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# A decompression bomb (a tiny file claiming huge dimensions) is refused, not decoded.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False
# load_rgb refuses oversized images itself and reports a corrupt file as one line, so PIL's warnings about
# them (bomb, corrupt EXIF or TIFF tags) only add noise to stderr. (Not warnings.catch_warnings() per call:
# it is not thread-safe, and datasets loads images in a thread pool.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
# Besides OSError, PIL's format plugins have raised these on damaged bytes (Pillow's own fuzzing finds them
# now and then); a corrupt file must never surface as a traceback.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, ArithmeticError,
                  NotImplementedError, MemoryError, struct.error)


def is_image_name(path: str | os.PathLike) -> bool:
    """True when the file name has an image extension we read."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit RGB, honouring EXIF orientation and alpha.

    Transparent pixels are composited on white (how a viewer shows them).
    16-bit and 32-bit integer images are scaled to 8 bits by their range.
    """
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose the pixels
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(np.nanmax(arr)) if arr.size else 0.0
        # 16-bit types hold 0..65535; 32-bit ints and floats say nothing, so guess from the values:
        # floats up to 1 are unit range, values up to 255 are 8-bit, else 16-bit.
        # (PIL opens many 16-bit PNGs as 32-bit "I", so larger values clip as 16-bit ones.)
        if mode == "F" and top <= 1.0:
            scale = 1.0
        elif top <= 255 and not mode.startswith("I;16"):
            scale = 255.0
        else:
            scale = 65535.0
        arr = np.clip(np.nan_to_num(arr) / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return img


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as 8-bit RGB (first frame of an animation).

    Raises:
        MaskclfError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    _check_regular_file(path)
    bomb = MaskclfError(f"{path}: image dimensions exceed {MAX_PIXELS} pixels (decompression bomb?); "
                        "remove it or shrink it")
    try:
        with Image.open(path) as img:
            img.seek(0)
            if img.width * img.height > MAX_PIXELS:  # PIL itself only refuses twice the limit
                raise bomb
            img.load()
            if img.width < 1 or img.height < 1:
                raise MaskclfError(f"{path}: image has no pixels; remove it")
            return to_rgb(img)
    except MaskclfError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise bomb from None
    except UnidentifiedImageError:
        raise MaskclfError(f"{path}: not an image file PIL can read; remove it or convert it to JPEG/PNG") from None
    except FileNotFoundError:
        raise MaskclfError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise MaskclfError(f"{path}: is a folder, expected an image file") from None
    except PermissionError:
        raise MaskclfError(f"{path}: permission denied; make it readable") from None
    except _DECODE_ERRORS as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise MaskclfError(f"{path}: corrupt or truncated image ({why}); remove it or re-download it") from None


def _check_regular_file(path: Path) -> None:
    """One-line MaskclfError unless ``path`` is a regular file (after links): never open a FIFO or device,
    whose read blocks forever or never ends."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MaskclfError(f"{path}: file not found") from None
    except PermissionError:
        raise MaskclfError(f"{path}: permission denied; make it readable") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MaskclfError(f"{path}: symbolic link loop; remove the link") from None
        raise MaskclfError(f"{path}: cannot read file ({e.strerror or e}); remove it") from None
    if stat.S_ISDIR(st.st_mode):
        raise MaskclfError(f"{path}: is a folder, expected an image file")
    if not stat.S_ISREG(st.st_mode):
        raise MaskclfError(f"{path}: not a regular file (a pipe, socket or device); remove it")


def load_array(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Load an image as a uint8 RGB array (H, W, 3), resized to ``size``×``size`` if given."""
    img = load_rgb(path)
    if size:
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def square_box(box: tuple[float, float, float, float], margin: float,
               width: int, height: int) -> tuple[int, int, int, int] | None:
    """The crop around a face box: squared on its longer side, grown by ``margin``, clipped to the image.

    ``margin`` is a fraction of the longer side added on each side (0.2 → 1.4× the face).
    Training crops and device crops both come from here, so they match.

    Returns:
        (x1, y1, x2, y2) integer pixel box, or None when nothing of it lies in the image.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    half = side / 2.0
    bx1, by1 = int(round(max(0.0, cx - half))), int(round(max(0.0, cy - half)))
    bx2, by2 = int(round(min(float(width), cx + half))), int(round(min(float(height), cy + half)))
    if bx2 - bx1 < 1 or by2 - by1 < 1:
        return None
    return bx1, by1, bx2, by2


def crop_face(img: Image.Image, box: tuple[float, float, float, float], margin: float) -> Image.Image | None:
    """Crop a face with :func:`square_box`; None when the box lies outside the image."""
    b = square_box(box, margin, img.width, img.height)
    return img.crop(b) if b else None


def dhash(img: Image.Image, hash_size: int = 8) -> int:
    """Difference hash: a 64-bit perceptual fingerprint; near-duplicates differ in few bits."""
    small = np.asarray(img.convert("L").resize((hash_size + 1, hash_size), Image.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0]) if hash_size == 8 else int("".join("1" if b else "0" for b in bits), 2)


def collect_images(inputs) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders searched recursively (sorted).

    Raises:
        MaskclfError: a path does not exist, or no image file is found.
    """
    files: list[Path] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            # Not only regular files: a broken link or a FIFO named like an image is reported by the loader,
            # not silently left out.
            files += sorted(f for f in p.rglob("*") if not f.is_dir() and is_image_name(f))
        elif p.exists() or p.is_symlink():  # a FIFO or a broken link too: the loader says what is wrong
            files.append(p)
        else:
            raise MaskclfError(f"{p}: no such file or folder")
    if not files:
        raise MaskclfError(f"{', '.join(map(str, inputs))}: no image files found")
    return files
