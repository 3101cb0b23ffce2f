"""Tests for maskclf.data.voc: Pascal VOC parsing is strict about fields and safe against hostile XML."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskclf.data import voc
from maskclf.files import MaskclfError
from maskclf.data.voc import MAX_XML_BYTES, VocAnnotation, VocObject, clip_box, find_image, parse_voc

VALID = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
  <folder>images</folder>
  <filename>maksssksksss7.png</filename>
  <size><width>400</width><height>226</height><depth>3</depth></size>
  <segmented>0</segmented>
  <object>
    <name>with_mask</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>0</difficult>
    <bndbox><xmin>12.5</xmin><ymin>30</ymin><xmax>80.25</xmax><ymax>101</ymax></bndbox>
  </object>
  <object>
    <name> without_mask </name>
    <difficult>1</difficult>
    <bndbox><xmin>200</xmin><ymin>40</ymin><xmax>260</xmax><ymax>120</ymax></bndbox>
  </object>
  <object>
    <name>mask_weared_incorrect</name>
    <bndbox><xmin>-5</xmin><ymin>0</ymin><xmax>500</xmax><ymax>10</ymax></bndbox>
  </object>
</annotation>
"""


def write(tmp_path: Path, text: str | bytes, name: str = "ann.xml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def assert_error_names_file(p: Path, match: str | None = None) -> str:
    with pytest.raises(MaskclfError) as exc:
        parse_voc(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "\n" not in msg and "\r" not in msg
    if match:
        assert match in msg
    return msg


def obj_xml(body: str) -> str:
    return f"<annotation><filename>a.jpg</filename><object>{body}</object></annotation>"


BOX = "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"

# --------------------------------------------------------------------------- parse_voc: good files


def test_parse_normal_file(tmp_path: Path) -> None:
    p = write(tmp_path, VALID)
    ann = parse_voc(p)
    assert isinstance(ann, VocAnnotation)
    assert ann.path == str(p)
    assert ann.filename == "maksssksksss7.png"
    assert (ann.width, ann.height) == (400, 226)
    assert [o.name for o in ann.objects] == ["with_mask", "without_mask", "mask_weared_incorrect"]
    first = ann.objects[0]
    assert (first.xmin, first.ymin, first.xmax, first.ymax) == (12.5, 30.0, 80.25, 101.0)
    assert all(isinstance(v, float) for v in (first.xmin, first.ymin, first.xmax, first.ymax))
    assert [o.difficult for o in ann.objects] == [False, True, False]
    # geometry is kept as written: clipping happens later
    assert (ann.objects[2].xmin, ann.objects[2].xmax) == (-5.0, 500.0)


def test_parse_no_objects_and_missing_size(tmp_path: Path) -> None:
    p = write(tmp_path, "<annotation><filename>x.jpg</filename></annotation>")
    ann = parse_voc(p)
    assert ann.filename == "x.jpg"
    assert ann.width is None and ann.height is None
    assert ann.objects == ()


def test_missing_size_with_objects(tmp_path: Path) -> None:
    p = write(tmp_path, obj_xml("<name>m</name>" + BOX))
    ann = parse_voc(p)
    assert ann.width is None and ann.height is None
    assert ann.objects == (VocObject("m", 1.0, 2.0, 30.0, 40.0, False),)


@pytest.mark.parametrize("size", [
    "<size><width>0</width><height>0</height></size>",
    "<size><width>abc</width><height>12</height></size>",
    "<size><width>inf</width><height>12</height></size>",
    "<size><width>1e400</width><height>12</height></size>",
    "<size><width>nan</width><height>12</height></size>",
    "<size/>",
])
def test_unusable_size_means_unknown(tmp_path: Path, size: str) -> None:
    p = write(tmp_path, f"<annotation><filename>a.jpg</filename>{size}</annotation>")
    ann = parse_voc(p)
    assert ann.width is None


def test_float_size_truncated_to_int(tmp_path: Path) -> None:
    p = write(tmp_path, "<annotation><size><width>640.0</width><height>480</height></size></annotation>")
    ann = parse_voc(p)
    assert (ann.width, ann.height) == (640, 480)
    assert isinstance(ann.width, int)


def test_missing_filename_is_empty(tmp_path: Path) -> None:
    ann = parse_voc(write(tmp_path, "<annotation/>"))
    assert ann.filename == "" and ann.objects == ()


# --------------------------------------------------------------------------- parse_voc: bad files


def test_malformed_xml(tmp_path: Path) -> None:
    p = write(tmp_path, "<annotation><filename>x.jpg</annotation>")
    assert_error_names_file(p, "malformed")


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02", b"not xml at all", b"\xff\xfe\x00<"])
def test_garbage_files(tmp_path: Path, content: bytes) -> None:
    assert_error_names_file(write(tmp_path, content))


def test_wrong_root(tmp_path: Path) -> None:
    p = write(tmp_path, "<svg><filename>x.jpg</filename></svg>")
    assert "svg" in assert_error_names_file(p, "root")


def test_object_missing_bndbox(tmp_path: Path) -> None:
    assert_error_names_file(write(tmp_path, obj_xml("<name>with_mask</name>")), "bndbox")


@pytest.mark.parametrize("name", ["", "<name></name>", "<name>   </name>"])
def test_object_missing_name(tmp_path: Path, name: str) -> None:
    assert_error_names_file(write(tmp_path, obj_xml(name + BOX)), "name")


@pytest.mark.parametrize("bndbox", [
    "<bndbox><xmin>abc</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>",
    "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax></ymax></bndbox>",
    "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax></bndbox>",
    "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3O</xmax><ymax>40</ymax></bndbox>",
    "<bndbox/>",
    # not-a-number / infinite corners are not coordinates either
    "<bndbox><xmin>nan</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>",
    "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>inf</xmax><ymax>40</ymax></bndbox>",
    "<bndbox><xmin>-Infinity</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>",
    "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>1e999</ymax></bndbox>",
])
def test_bad_coordinate(tmp_path: Path, bndbox: str) -> None:
    msg = assert_error_names_file(write(tmp_path, obj_xml("<name>with_mask</name>" + bndbox)))
    assert "with_mask" in msg and "object 0" in msg


def test_error_with_multiline_name_is_one_line(tmp_path: Path) -> None:
    bad = "<name>with\n  mask</name><bndbox><xmin>x</xmin></bndbox>"
    msg = assert_error_names_file(write(tmp_path, obj_xml(bad)))  # asserts no newline
    assert "object 0" in msg


def test_error_names_the_bad_object(tmp_path: Path) -> None:
    good = "<object><name>ok</name>" + BOX + "</object>"
    bad = "<object><name>broken</name><bndbox><xmin>x</xmin></bndbox></object>"
    p = write(tmp_path, f"<annotation>{good}{good}{bad}</annotation>")
    msg = assert_error_names_file(p)
    assert "object 2" in msg and "broken" in msg


@pytest.mark.parametrize("encoding", ["no-such-codec", "shift_jis", "utf-32", "rot13", "idna"])
def test_unusable_declared_encoding(tmp_path: Path, encoding: str) -> None:
    # the XML declaration is file content too: an unknown or unsupported codec is a bad file
    p = write(tmp_path, f'<?xml version="1.0" encoding="{encoding}"?><annotation/>')
    assert_error_names_file(p)


def test_missing_file(tmp_path: Path) -> None:
    assert_error_names_file(tmp_path / "missing.xml")


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "dir.xml"
    d.mkdir()
    assert_error_names_file(d)


# --------------------------------------------------------------------------- hostile XML

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE annotation [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>&lol9;</filename>
<object><name>&lol9;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>
</annotation>
"""


def test_billion_laughs_refused_quickly(tmp_path: Path) -> None:
    p = write(tmp_path, BILLION_LAUGHS)
    t0 = time.perf_counter()
    msg = assert_error_names_file(p)
    assert time.perf_counter() - t0 < 2.0
    assert "lollol" not in msg


def _secret(tmp_path: Path) -> tuple[Path, str]:
    marker = "TOP-SECRET-7f3a9c"
    s = tmp_path / "secret.txt"
    s.write_text(f"{marker}\n")
    return s, marker


def _external_entity_docs(tmp_path: Path) -> list[tuple[str, str]]:
    secret, marker = _secret(tmp_path)
    docs = []
    for uri, leak in ((secret.as_uri(), marker), ("file:///etc/passwd", "root:")):
        docs.append((f"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "{uri}">]>
<annotation><filename>&xxe;</filename>
<object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>
</annotation>""", leak))
        docs.append((f"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY % ext SYSTEM "{uri}"> %ext;]>
<annotation><filename>a.jpg</filename></annotation>""", leak))
    return docs


def test_external_entity_refused_and_never_leaks(tmp_path: Path) -> None:
    for i, (doc, leak) in enumerate(_external_entity_docs(tmp_path)):
        p = write(tmp_path, doc, f"xxe{i}.xml")
        t0 = time.perf_counter()
        msg = assert_error_names_file(p)
        assert time.perf_counter() - t0 < 2.0
        assert leak not in msg


def test_external_dtd_never_loaded(tmp_path: Path) -> None:
    # an external DTD (no entity) may parse, but its content must never reach the result
    secret, marker = _secret(tmp_path)
    for i, uri in enumerate((secret.as_uri(), "file:///etc/passwd")):
        p = write(tmp_path, f'<?xml version="1.0"?><!DOCTYPE annotation SYSTEM "{uri}">'
                            f'<annotation><filename>a.jpg</filename></annotation>', f"dtd{i}.xml")
        try:
            ann = parse_voc(p)
        except MaskclfError as e:
            assert str(p) in str(e) and marker not in str(e) and "root:" not in str(e)
        else:
            assert ann.filename == "a.jpg" and ann.objects == ()
            assert marker not in repr(ann) and "root:" not in repr(ann)


def test_huge_file_refused_without_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "huge.xml"
    head, tail = b"<annotation><filename>a.jpg</filename>", b"</annotation>"
    pad = b"<!--" + b"x" * (MAX_XML_BYTES - len(head) - len(tail)) + b"-->"
    p.write_bytes(head + pad + tail)
    assert p.stat().st_size > MAX_XML_BYTES

    def no_parse(*a, **k):
        raise AssertionError("parsed a file that should have been refused by size")

    monkeypatch.setattr(voc.SafeET, "parse", no_parse)
    msg = assert_error_names_file(p)
    assert str(p.stat().st_size) in msg


def test_file_at_size_limit_still_parsed(tmp_path: Path) -> None:
    head, tail = b"<annotation><filename>a.jpg</filename>", b"</annotation>"
    pad = b" " * (MAX_XML_BYTES - len(head) - len(tail))
    p = write(tmp_path, head + pad + tail, "limit.xml")
    assert p.stat().st_size == MAX_XML_BYTES
    assert parse_voc(p).filename == "a.jpg"


# --------------------------------------------------------------------------- clip_box


def ob(x1, y1, x2, y2) -> VocObject:
    return VocObject("m", float(x1), float(y1), float(x2), float(y2))


def test_clip_box_inside_unchanged() -> None:
    assert clip_box(ob(10, 20, 30, 40), 100, 50) == (10.0, 20.0, 30.0, 40.0)


def test_clip_box_partly_outside() -> None:
    assert clip_box(ob(-10, -5, 30, 40), 100, 50) == (0.0, 0.0, 30.0, 40.0)
    assert clip_box(ob(80, 30, 150, 90), 100, 50) == (80.0, 30.0, 100.0, 50.0)
    assert clip_box(ob(-10, -10, 200, 200), 100, 50) == (0.0, 0.0, 100.0, 50.0)


@pytest.mark.parametrize("box", [
    (120, 10, 150, 20),    # right of the image
    (10, 60, 20, 70),      # below
    (-30, -30, -1, -1),    # above-left
    (10, 10, 10, 30),      # zero width
    (10, 10, 30, 10),      # zero height
    (10, 10, 10.5, 30),    # under one pixel wide
    (30, 10, 10, 30),      # inverted x
    (10, 30, 30, 10),      # inverted y
    (100, 10, 130, 30),    # touching the right edge from outside
])
def test_clip_box_none(box) -> None:
    assert clip_box(ob(*box), 100, 50) is None


# --------------------------------------------------------------------------- find_image


def ann_for(tmp_path: Path, filename: str, xml_name: str = "ann.xml") -> VocAnnotation:
    return VocAnnotation(str(tmp_path / "annotations" / xml_name), filename, None, None, ())


def test_find_image_by_filename(tmp_path: Path) -> None:
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "face1.jpg").write_bytes(b"x")
    (imgs / "face1.png").write_bytes(b"x")
    assert find_image(imgs, ann_for(tmp_path, "face1.jpg")) == imgs / "face1.jpg"
    # only the name counts, not a folder written by the annotation tool
    assert find_image(imgs, ann_for(tmp_path, "C:/labelImg/data/face1.png")) == imgs / "face1.png"
    assert find_image(imgs, ann_for(tmp_path, "/home/someone/face1.jpg")) == imgs / "face1.jpg"


def test_find_image_by_stem_other_extension(tmp_path: Path) -> None:
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "face2.png").write_bytes(b"x")
    assert find_image(imgs, ann_for(tmp_path, "face2.jpg")) == imgs / "face2.png"


def test_find_image_by_annotation_stem(tmp_path: Path) -> None:
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "face3.jpeg").write_bytes(b"x")
    assert find_image(imgs, ann_for(tmp_path, "", "face3.xml")) == imgs / "face3.jpeg"
    # a wrong <filename> falls back to the annotation's own stem
    assert find_image(imgs, ann_for(tmp_path, "renamed.jpg", "face3.xml")) == imgs / "face3.jpeg"


def test_find_image_absent(tmp_path: Path) -> None:
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "other.jpg").write_bytes(b"x")
    (imgs / "face4.jpg").mkdir()  # a folder with the right name is not an image
    assert find_image(imgs, ann_for(tmp_path, "face4.jpg", "face4.xml")) is None
    assert find_image(imgs, ann_for(tmp_path, "", "nothing.xml")) is None
    assert find_image(tmp_path / "no-such-dir", ann_for(tmp_path, "other.jpg")) is None


def test_parse_then_find(tmp_path: Path) -> None:
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "maksssksksss7.png").write_bytes(b"x")
    ann = parse_voc(write(tmp_path, VALID))
    assert find_image(imgs, ann) == imgs / "maksssksksss7.png"


# --------------------------------------------------------------------------- fuzz

_VALID_BYTES = VALID.encode()
_TOKENS = [b"nan", b"inf", b"-1e400", b"", b"abc", b"1e400", b"0x10", b"&amp;", b"&lol;", b"<", b"]]>",
           b"<!DOCTYPE a>", b"\x00", b"\xff", b"\xc3", b"-0", b"1" * 400, b"a\nb"]
_ENCODINGS = [b"utf-8", b"latin-1", b"ascii", b"utf-16", b"utf-32", b"shift_jis", b"foo", b"rot13",
              b"idna", b"cp1252", b"base64", b""]


@st.composite
def _mutated(draw) -> bytes:
    data = bytearray(_VALID_BYTES)
    if draw(st.booleans()):
        enc = draw(st.sampled_from(_ENCODINGS))
        data = bytearray(bytes(data).replace(b"utf-8", enc, 1))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and data:  # flip one byte
            pos = min(pos, len(data) - 1)
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:  # delete a run
            n = draw(st.integers(1, 40))
            del data[pos:pos + n]
        elif op == 2:  # insert random bytes
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif op == 3:  # insert a nasty token
            data[pos:pos] = draw(st.sampled_from(_TOKENS))
        else:  # replace a field's text with a nasty token
            field = draw(st.sampled_from([b"12.5", b"30", b"80.25", b"400", b"226", b"1</difficult>",
                                          b"with_mask", b"maksssksksss7.png"]))
            data = bytearray(bytes(data).replace(field, draw(st.sampled_from(_TOKENS)), 1))
    return bytes(data)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=600), _mutated()))
def test_fuzz_parse_voc(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fuzz.xml"
    p.write_bytes(data)
    try:
        ann = parse_voc(p)
    except MaskclfError as e:
        msg = str(e)
        assert str(p) in msg and "\n" not in msg
        return
    assert isinstance(ann, VocAnnotation)
    for o in ann.objects:
        assert o.name
        assert all(math.isfinite(v) for v in (o.xmin, o.ymin, o.xmax, o.ymax))
    assert ann.width is None or isinstance(ann.width, int)
