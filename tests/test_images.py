"""Tests for maskclf.data.images: every image becomes 8-bit RGB, broken files become one-line MaskclfErrors."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw, ImageEnhance, features

from maskclf.data import images
from maskclf.files import MaskclfError
from maskclf.data.images import crop_face, dhash, load_array, load_rgb, square_box, to_rgb

WHITE = (255, 255, 255)


def px(img: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(img)[y, x])


def assert_rgb8(img: Image.Image, size: tuple[int, int]) -> None:
    assert img.mode == "RGB"
    assert img.size == size
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and arr.shape == (size[1], size[0], 3)


def close(a, b, tol: int) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


# --------------------------------------------------------------------------- modes


def test_rgba_transparent_on_white_opaque_kept(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[0, 0] = (255, 0, 0, 0)        # fully transparent red -> white
    arr[0, 1] = (0, 0, 255, 255)      # opaque blue -> blue
    arr[0, 2] = (0, 0, 0, 128)        # half-transparent black -> mid grey
    arr[0, 3] = (10, 200, 30, 255)
    p = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(p)
    img = load_rgb(p)
    assert_rgb8(img, (4, 4))
    assert px(img, 0, 0) == WHITE
    assert px(img, 1, 0) == (0, 0, 255)
    assert close(px(img, 2, 0), (127, 127, 127), 2)
    assert px(img, 3, 0) == (10, 200, 30)
    # the rest of the image is transparent black -> white, not black
    assert px(img, 3, 3) == WHITE


def _palette_image() -> Image.Image:
    img = Image.new("P", (4, 2), 0)
    pal = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12)
    img.putpalette(pal)
    img.putpixel((1, 0), 1)
    img.putpixel((2, 0), 2)
    img.putpixel((3, 0), 3)
    return img


def test_palette_without_transparency(tmp_path: Path) -> None:
    p = tmp_path / "pal.png"
    _palette_image().save(p)
    with Image.open(p) as check:
        assert check.mode == "P" and "transparency" not in check.info
    img = load_rgb(p)
    assert_rgb8(img, (4, 2))
    assert px(img, 0, 0) == (0, 0, 0)  # index 0 is black, not transparent
    assert px(img, 1, 0) == (255, 0, 0)
    assert px(img, 2, 0) == (0, 255, 0)
    assert px(img, 3, 0) == (0, 0, 255)


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_palette_with_transparency(tmp_path: Path, fmt: str) -> None:
    p = tmp_path / f"palt.{fmt}"
    _palette_image().save(p, transparency=0)
    with Image.open(p) as check:
        assert check.mode == "P" and "transparency" in check.info
    img = load_rgb(p)
    assert_rgb8(img, (4, 2))
    assert px(img, 0, 0) == WHITE  # transparent index composited on white
    assert px(img, 0, 1) == WHITE
    assert px(img, 1, 0) == (255, 0, 0)
    assert px(img, 3, 0) == (0, 0, 255)


def test_grey_l(tmp_path: Path) -> None:
    arr = np.array([[0, 77, 255]], dtype=np.uint8)
    p = tmp_path / "l.png"
    Image.fromarray(arr).save(p)
    img = load_rgb(p)
    assert_rgb8(img, (3, 1))
    assert [px(img, i, 0) for i in range(3)] == [(0, 0, 0), (77, 77, 77), (255, 255, 255)]


def test_grey_alpha_la(tmp_path: Path) -> None:
    img = Image.new("LA", (3, 1))
    img.putpixel((0, 0), (100, 0))    # transparent -> white
    img.putpixel((1, 0), (100, 255))  # opaque -> grey 100
    img.putpixel((2, 0), (0, 255))
    p = tmp_path / "la.png"
    img.save(p)
    with Image.open(p) as check:
        assert check.mode == "LA"
    out = load_rgb(p)
    assert_rgb8(out, (3, 1))
    assert px(out, 0, 0) == WHITE
    assert px(out, 1, 0) == (100, 100, 100)
    assert px(out, 2, 0) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["png", "bmp"])
def test_one_bit(tmp_path: Path, fmt: str) -> None:
    img = Image.new("1", (8, 2), 0)
    img.putpixel((3, 1), 1)
    p = tmp_path / f"bw.{fmt}"
    img.save(p)
    with Image.open(p) as check:
        assert check.mode == "1"
    out = load_rgb(p)
    assert_rgb8(out, (8, 2))
    assert px(out, 3, 1) == WHITE
    assert px(out, 0, 0) == (0, 0, 0)


@pytest.mark.parametrize("cmyk, rgb", [
    ((0, 255, 255, 0), (255, 0, 0)),    # pure red
    ((255, 0, 255, 0), (0, 255, 0)),    # pure green
    ((0, 0, 0, 255), (0, 0, 0)),        # black ink
    ((0, 0, 0, 0), (255, 255, 255)),    # no ink: paper white
])
def test_cmyk_jpeg(tmp_path: Path, cmyk, rgb) -> None:
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), cmyk).save(p, quality=95)
    with Image.open(p) as check:
        assert check.mode == "CMYK"
    out = load_rgb(p)
    assert_rgb8(out, (16, 16))
    assert close(px(out, 8, 8), rgb, 12), px(out, 8, 8)


def test_sixteen_bit_grey_png(tmp_path: Path) -> None:
    arr = np.array([[65535, 32768, 0, 257]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(arr).save(p)
    with Image.open(p) as check:
        assert check.mode.startswith("I")  # really a 16-bit image on disk
    out = load_rgb(p)
    assert_rgb8(out, (4, 1))
    assert px(out, 0, 0) == WHITE
    assert close(px(out, 1, 0), (128, 128, 128), 1)
    assert px(out, 2, 0) == (0, 0, 0)
    assert px(out, 3, 0) == (1, 1, 1)  # scaled by the 16-bit range, not the image's own range


def test_sixteen_bit_dark_png_not_stretched(tmp_path: Path) -> None:
    # a dark 16-bit image (all values <= 255) must stay dark
    arr = np.array([[0, 200, 255]], dtype=np.uint16)
    p = tmp_path / "g16dark.png"
    Image.fromarray(arr).save(p)
    out = load_rgb(p)
    assert all(v[0] <= 1 for v in (px(out, i, 0) for i in range(3)))


def test_thirty_two_bit_i(tmp_path: Path) -> None:
    arr = np.array([[0, 65535, 32768, 100000, -5]], dtype=np.int32)
    p = tmp_path / "i32.tif"
    Image.fromarray(arr).save(p)
    with Image.open(p) as check:
        assert check.mode == "I"
    out = load_rgb(p)
    assert_rgb8(out, (5, 1))
    vals = [px(out, i, 0)[0] for i in range(5)]
    assert vals[0] == 0 and vals[1] == 255 and abs(vals[2] - 128) <= 1
    assert vals[3] == 255 and vals[4] == 0  # out-of-range values clip, never wrap


def test_thirty_two_bit_i_eight_bit_range_kept(tmp_path: Path) -> None:
    # an L image converted to I (values 0..255) keeps its values
    src = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8)).convert("I")
    out = to_rgb(src)
    assert [px(out, i, 0)[0] for i in range(3)] == [0, 100, 255]


def _marker_jpeg(path: Path, orientation: int) -> None:
    img = Image.new("RGB", (40, 20), WHITE)
    ImageDraw.Draw(img).rectangle([0, 0, 7, 7], fill=(255, 0, 0))  # red marker top-left as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, quality=95)


@pytest.mark.parametrize("orientation, corner", [
    (6, "top-right"),    # viewer rotates 90 deg clockwise: stored top-left -> shown top-right
    (8, "bottom-left"),  # viewer rotates 90 deg counter-clockwise: stored top-left -> shown bottom-left
])
def test_exif_rotated_jpeg(tmp_path: Path, orientation: int, corner: str) -> None:
    p = tmp_path / f"rot{orientation}.jpg"
    _marker_jpeg(p, orientation)
    with Image.open(p) as raw:
        assert raw.size == (40, 20) and raw.getexif().get(0x0112) == orientation
    out = load_rgb(p)
    assert_rgb8(out, (20, 40))  # width and height swapped
    w, h = out.size
    corners = {"top-left": (2, 2), "top-right": (w - 3, 2),
               "bottom-left": (2, h - 3), "bottom-right": (w - 3, h - 3)}
    for name, (x, y) in corners.items():
        if name == corner:
            assert close(px(out, x, y), (255, 0, 0), 40), (name, px(out, x, y))
        else:
            assert close(px(out, x, y), WHITE, 40), (name, px(out, x, y))


def test_exif_orientation_one_untouched(tmp_path: Path) -> None:
    p = tmp_path / "rot1.jpg"
    _marker_jpeg(p, 1)
    out = load_rgb(p)
    assert out.size == (40, 20)
    assert close(px(out, 2, 2), (255, 0, 0), 40)


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(p) as check:
        assert getattr(check, "n_frames", 1) == 3
    out = load_rgb(p)
    assert_rgb8(out, (8, 8))
    assert px(out, 4, 4) == (255, 0, 0)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WEBP")
def test_webp(tmp_path: Path) -> None:
    img = Image.new("RGB", (10, 6), (20, 120, 220))
    img.putpixel((0, 0), (250, 5, 5))
    p = tmp_path / "x.webp"
    img.save(p, lossless=True)
    out = load_rgb(p)
    assert_rgb8(out, (10, 6))
    assert px(out, 5, 3) == (20, 120, 220)
    assert px(out, 0, 0) == (250, 5, 5)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WEBP")
def test_webp_with_alpha(tmp_path: Path) -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.putpixel((1, 1), (0, 0, 255, 255))
    p = tmp_path / "a.webp"
    img.save(p, lossless=True, exact=True)
    out = load_rgb(p)
    assert px(out, 0, 0) == WHITE
    assert px(out, 1, 1) == (0, 0, 255)


def test_load_array(tmp_path: Path) -> None:
    p = tmp_path / "grey.png"
    Image.new("L", (30, 20), 90).save(p)
    a = load_array(p)
    assert a.dtype == np.uint8 and a.shape == (20, 30, 3)
    assert (a == 90).all()
    b = load_array(p, size=16)
    assert b.dtype == np.uint8 and b.shape == (16, 16, 3)
    assert (b == 90).all()


def test_load_rgb_result_usable_after_file_closed(tmp_path: Path) -> None:
    p = tmp_path / "rgb.png"
    Image.new("RGB", (5, 5), (1, 2, 3)).save(p)
    out = load_rgb(p)
    p.unlink()  # the returned image must not depend on the file any more
    assert px(out.resize((3, 3)), 1, 1) == (1, 2, 3)


# --------------------------------------------------------------------------- errors


def assert_names_file(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert str(path) in msg
    assert "\n" not in msg and "\r" not in msg
    return msg


def _truncated(tmp_path: Path, fmt: str) -> Path:
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8))
    full = tmp_path / f"full.{fmt}"
    img.save(full)
    data = full.read_bytes()
    p = tmp_path / f"truncated.{fmt}"
    p.write_bytes(data[: len(data) // 2])
    return p


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    p = _truncated(tmp_path, fmt)
    with pytest.raises(MaskclfError) as exc:
        load_rgb(p)
    assert "truncated" in assert_names_file(exc, p)


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(MaskclfError) as exc:
        load_rgb(p)
    assert_names_file(exc, p)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\nsecond line\n")
    with pytest.raises(MaskclfError) as exc:
        load_rgb(p)
    assert_names_file(exc, p)


def _bomb_png(path: Path, width: int, height: int) -> None:
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC over type + IHDR data
    path.write_bytes(bytes(data))
    assert struct.unpack(">II", path.read_bytes()[16:24]) == (width, height)


@pytest.mark.parametrize("w, h", [
    (100_000, 100_000),  # far beyond the limit: PIL's DecompressionBombError
    (10_000, 10_000),    # 100 Mpx: between the limit and twice it (PIL only warns; must still refuse)
])
def test_decompression_bomb_refused_quickly(tmp_path: Path, w: int, h: int) -> None:
    p = tmp_path / "bomb.png"
    _bomb_png(p, w, h)
    assert p.stat().st_size < 200
    t0 = time.perf_counter()
    with pytest.raises(MaskclfError) as exc:
        load_rgb(p)
    assert time.perf_counter() - t0 < 2.0  # refused from the header, nothing decoded
    msg = assert_names_file(exc, p)
    assert "pixels" in msg


def test_pixel_limit_set() -> None:
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS


def test_missing_path(tmp_path: Path) -> None:
    p = tmp_path / "nope" / "missing.png"
    with pytest.raises(MaskclfError) as exc:
        load_rgb(p)
    assert "not found" in assert_names_file(exc, p)


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "folder.jpg"
    d.mkdir()
    with pytest.raises(MaskclfError) as exc:
        load_rgb(d)
    assert_names_file(exc, d)


def test_load_array_propagates_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MaskclfError) as exc:
        load_array(p, size=8)
    assert_names_file(exc, p)


# --------------------------------------------------------------------------- square_box / crop_face


def test_square_box_centred_square() -> None:
    # 20 wide, 40 tall face centred at (50, 60): squared on the longer side
    assert square_box((40, 40, 60, 80), 0.0, 200, 200) == (30, 40, 70, 80)


def test_square_box_margin_grows() -> None:
    b0 = square_box((40, 40, 60, 80), 0.0, 200, 200)
    b1 = square_box((40, 40, 60, 80), 0.5, 200, 200)
    assert b1 == (10, 20, 90, 100)  # 40 * (1 + 2*0.5) = 80 side, same centre
    assert b1[2] - b1[0] > b0[2] - b0[0]
    assert (b1[0] + b1[2]) / 2 == (b0[0] + b0[2]) / 2


def test_square_box_clipped_at_borders() -> None:
    assert square_box((0, 0, 20, 20), 0.5, 200, 100) == (0, 0, 30, 30)
    assert square_box((190, 90, 200, 100), 1.0, 200, 100) == (180, 80, 200, 100)
    # a face bigger than the image becomes the whole image
    assert square_box((-50, -50, 250, 150), 0.2, 200, 100) == (0, 0, 200, 100)


@pytest.mark.parametrize("box", [
    (300, 300, 320, 320),   # right/below
    (-50, -50, -10, -10),   # left/above
    (250, 10, 260, 20),     # right only
    (10, -40, 20, -30),     # above only
])
def test_square_box_outside_is_none(box) -> None:
    assert square_box(box, 0.0, 200, 100) is None


def test_square_box_degenerate_is_none() -> None:
    assert square_box((50, 50, 50, 50), 0.5, 200, 200) is None  # zero-size face


def test_crop_face_size_and_content() -> None:
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    ImageDraw.Draw(img).rectangle([40, 40, 59, 59], fill=(0, 255, 0))
    crop = crop_face(img, (40, 40, 60, 60), 0.25)
    assert crop is not None
    assert crop.size == (30, 30)  # 20 * 1.5
    assert px(crop, 15, 15) == (0, 255, 0)
    assert px(crop, 1, 1) == (0, 0, 0)
    clipped = crop_face(img, (0, 0, 20, 20), 0.5)
    assert clipped is not None and clipped.size == (30, 30)
    assert crop_face(img, (500, 500, 520, 520), 0.25) is None


# --------------------------------------------------------------------------- dhash


def _drawn(kind: str) -> Image.Image:
    x = np.linspace(0, 255, 128)
    ramp = np.tile(x if kind == "a" else x[::-1], (128, 1))
    arr = np.stack([ramp, ramp[::-1, :] * 0.5 + 60, np.full_like(ramp, 90)], -1).astype(np.uint8)
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    if kind == "a":
        d.ellipse([30, 30, 100, 100], fill=(250, 20, 20))
    else:
        d.polygon([(0, 127), (64, 10), (127, 127)], fill=(10, 10, 240))
    return img


def _hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_dhash_identical() -> None:
    a = _drawn("a")
    h = dhash(a)
    assert isinstance(h, int) and 0 <= h < 2**64
    assert dhash(a.copy()) == h
    assert dhash(_drawn("a")) == h


def test_dhash_near_duplicate(tmp_path: Path) -> None:
    a = _drawn("a")
    brighter = ImageEnhance.Brightness(a).enhance(1.08)
    p = tmp_path / "copy.jpg"
    brighter.save(p, quality=70)
    copy = load_rgb(p)
    assert _hamming(dhash(a), dhash(copy)) <= 4
    # a resized copy is a near-duplicate too
    assert _hamming(dhash(a), dhash(a.resize((300, 300)))) <= 4


def test_dhash_different_images() -> None:
    assert _hamming(dhash(_drawn("a")), dhash(_drawn("b"))) > 10


def test_dhash_encodes_horizontal_gradients() -> None:
    ramp = np.tile(np.linspace(0, 255, 90).astype(np.uint8), (40, 1))
    assert dhash(Image.fromarray(ramp)) == 2**64 - 1            # every pixel brighter than its left neighbour
    assert dhash(Image.fromarray(ramp[:, ::-1].copy())) == 0    # every pixel darker
    assert dhash(Image.new("RGB", (50, 50), (200, 200, 200))) == 0  # flat: no differences
    top = np.zeros((80, 90), dtype=np.uint8)
    top[:40] = ramp  # brighter-to-the-right only in the top half: first rows' bits set, last rows' clear
    h = dhash(Image.fromarray(top))
    assert h >> 32 == 0xFFFFFFFF  # the first bits are the top rows
    assert h & 0xFFFF == 0


def test_dhash_other_sizes() -> None:
    a = _drawn("a")
    assert 0 <= dhash(a, hash_size=4) < 2**16
    assert 0 <= dhash(a, hash_size=16) < 2**256
    assert dhash(a, hash_size=16) == dhash(a.copy(), hash_size=16)


# --------------------------------------------------------------------------- properties

_dims = st.tuples(st.integers(1, 8), st.integers(1, 8))


@st.composite
def _mode_arrays(draw):
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "I;16"]))
    h, w = draw(_dims)
    if mode == "L":
        arr = draw(hnp.arrays(np.uint8, (h, w)))
    elif mode == "RGB":
        arr = draw(hnp.arrays(np.uint8, (h, w, 3)))
    elif mode == "RGBA":
        arr = draw(hnp.arrays(np.uint8, (h, w, 4)))
    else:
        arr = draw(hnp.arrays(np.uint16, (h, w)))
    return mode, arr


@settings(max_examples=50, deadline=None, database=None)
@given(_mode_arrays())
def test_to_rgb_property(mode_arr) -> None:
    mode, arr = mode_arr
    img = Image.fromarray(arr)
    assert img.mode == mode
    out = to_rgb(img)
    h, w = arr.shape[:2]
    assert out.mode == "RGB" and out.size == (w, h)
    o = np.asarray(out).astype(np.int64)
    assert o.shape == (h, w, 3)
    if mode == "L":
        assert (o == arr[..., None]).all()
    elif mode == "RGB":
        assert (o == arr).all()
    elif mode == "RGBA":
        opaque = arr[..., 3] == 255
        clear = arr[..., 3] == 0
        assert (o[opaque] == arr[opaque][:, :3]).all()
        assert (o[clear] == 255).all()
    else:
        expect = np.floor(arr.astype(np.float64) / 65535.0 * 255.0 + 0.5)
        assert (np.abs(o - expect[..., None]) <= 1).all()


_coord = st.floats(-500, 1500, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(_coord, _coord, _coord, _coord), st.floats(0, 1), st.integers(1, 1000), st.integers(1, 1000))
def test_square_box_property(box, margin, width, height) -> None:
    b = square_box(box, margin, width, height)
    if b is None:
        return
    x1, y1, x2, y2 = b
    assert all(isinstance(v, int) for v in b)
    assert 0 <= x1 < x2 <= width
    assert 0 <= y1 < y2 <= height
