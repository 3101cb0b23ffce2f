"""`maskclf data relabel`: reviewed label decisions become a corrected copy; the original is never touched."""

import csv
import filecmp
import json
from pathlib import Path

import pytest

from conftest import make_class_folders
from maskclf.cli import main
from maskclf.config import DataConfig
from maskclf.data.datasets import load_dataset
from maskclf.files import MaskclfError
from maskclf.research.relabel import relabel
from maskclf.data.voc import parse_voc


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _names(xml: Path) -> list[str]:
    return [o.name for o in parse_voc(xml).objects]


def test_voc_copy_changes_only_the_named_objects(sample_dir, tmp_path):
    ann = sample_dir / "annotations"
    before = _names(ann / "maksssksksss0.xml")
    assert before == ["without_mask", "with_mask", "without_mask"]
    # What a reviewed suspects.csv looks like: extra columns, full photo paths, a "the model is wrong" row
    # (correct_label = label: kept) and a row nobody reviewed (empty correct_label: ignored).
    dec = _csv(tmp_path / "reviewed.csv", ["rank", "photo", "object", "label", "suggested", "correct_label"], [
        [1, str(sample_dir / "images" / "maksssksksss0.png"), 1, "with_mask", "without_mask", "without_mask"],
        [2, "maksssksksss101.png", 0, "with_mask", "mask_weared_incorrect", "with_mask"],
        [3, "maksssksksss111.png", 0, _names(ann / "maksssksksss111.xml")[0], "without_mask", ""],
    ])
    out = tmp_path / "fixed"
    rep = relabel(sample_dir, dec, out)

    assert rep["changed"] == 1
    assert rep["changes"] == [{"photo": "maksssksksss0", "annotation": "maksssksksss0.xml", "object": 1,
                               "from": "with_mask", "to": "without_mask"}]
    assert json.loads((out / "relabel.json").read_text())["changes"] == rep["changes"]
    assert _names(out / "annotations" / "maksssksksss0.xml") == ["without_mask", "without_mask", "without_mask"]
    assert _names(ann / "maksssksksss0.xml") == before  # the original is untouched
    xmls = sorted(p.name for p in ann.glob("*.xml"))
    assert sorted(p.name for p in (out / "annotations").glob("*.xml")) == xmls
    for name in xmls:
        if name != "maksssksksss0.xml":
            assert filecmp.cmp(ann / name, out / "annotations" / name, shallow=False)
    assert (out / "images").resolve() == (sample_dir / "images").resolve()

    # The copy loads as a VOC dataset with exactly one face moved between classes.
    def counts(root):
        ds = load_dataset(DataConfig(path=str(root)), progress=False)
        return {n: ds.labels.count(i) for i, n in enumerate(ds.class_names)}

    a, b = counts(sample_dir), counts(out)
    assert b["with_mask"] == a["with_mask"] - 1 and b["without_mask"] == a["without_mask"] + 1
    assert b["mask_weared_incorrect"] == a["mask_weared_incorrect"]


@pytest.mark.parametrize("row, message", [
    (["maksssksksss0.png", 1, "without_mask", "with_mask"], "labelled 'with_mask' in the data, not 'without_mask'"),
    (["maksssksksss0.png", 7, "", "with_mask"], "has 3 objects, no object 7"),
    (["maksssksksss0.png", 1, "", "masked"], "'masked' is not a class of the data"),
    (["nosuchphoto.png", 0, "", "with_mask"], "no annotation for photo 'nosuchphoto.png'"),
    (["maksssksksss0.png", "", "", "with_mask"], "needs the 'object' column"),
    (["maksssksksss0.png", "one", "", "with_mask"], "object 'one' is not an index"),
])
def test_voc_refusals_name_the_line_and_write_nothing(sample_dir, tmp_path, row, message):
    dec = _csv(tmp_path / "d.csv", ["photo", "object", "label", "correct_label"], [row])
    with pytest.raises(MaskclfError, match="line 2") as e:
        relabel(sample_dir, dec, tmp_path / "fixed")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]  # no copy, no temporary folder left


def test_conflicting_decisions_and_bad_files_are_refused(sample_dir, tmp_path):
    dec = _csv(tmp_path / "d.csv", ["photo", "object", "correct_label"],
               [["maksssksksss0.png", 1, "without_mask"], ["maksssksksss0.png", 1, "mask_weared_incorrect"]])
    with pytest.raises(MaskclfError, match="corrected twice"):
        relabel(sample_dir, dec, tmp_path / "fixed")
    no_col = _csv(tmp_path / "n.csv", ["photo", "object", "label"], [["maksssksksss0.png", 1, "with_mask"]])
    with pytest.raises(MaskclfError, match="needs a 'correct_label' column"):
        relabel(sample_dir, no_col, tmp_path / "fixed")
    (tmp_path / "exists").mkdir()
    with pytest.raises(MaskclfError, match="already exists"):
        relabel(sample_dir, dec, tmp_path / "exists")
    with pytest.raises(MaskclfError, match="cannot read the decisions file"):
        relabel(sample_dir, tmp_path / "missing.csv", tmp_path / "fixed")
    assert not (tmp_path / "fixed").exists()


def test_class_folders_and_split_folders(tmp_path):
    root = make_class_folders(tmp_path / "shapes", per_class=4)
    (root / "circle" / "more").mkdir()  # training lists class folders recursively: the copy must hold it too
    (root / "circle" / "more" / "nested.png").hardlink_to(root / "circle" / "circle_000.png")
    dec = _csv(tmp_path / "d.csv", ["path", "correct_label"], [["circle_001.png", "square"],
                                                               [str(root / "square" / "square_002.png"), "square"]])
    out = tmp_path / "fixed"
    rep = relabel(root, dec, out)
    assert rep["layout"] == "folders" and rep["changed"] == 1
    assert sorted(p.name for p in (out / "circle").iterdir()) == ["circle_000.png", "circle_002.png", "circle_003.png",
                                                                  "nested.png"]
    assert (out / "square" / "circle_001.png").resolve() == (root / "circle" / "circle_001.png").resolve()
    assert len(list((out / "square").iterdir())) == 5
    assert (out / "circle" / "nested.png").resolve() == (root / "circle" / "more" / "nested.png").resolve()
    assert (root / "circle" / "circle_001.png").is_file()  # the original stays where it was

    splits = tmp_path / "splits"
    make_class_folders(splits / "train", per_class=3)
    make_class_folders(splits / "test", per_class=2, seed=1)
    dec2 = _csv(tmp_path / "d2.csv", ["photo", "label", "correct_label"],
                [[str(splits / "test" / "square" / "square_001.png"), "square", "circle"]])
    rep2 = relabel(splits, dec2, tmp_path / "fixed2")
    assert rep2["layout"] == "splits" and rep2["changes"][0]["split"] == "test"
    assert (tmp_path / "fixed2" / "test" / "circle" / "square_001.png").is_symlink()
    assert len(list((tmp_path / "fixed2" / "train" / "circle").iterdir())) == 3
    ambiguous = _csv(tmp_path / "d3.csv", ["photo", "correct_label"], [["square_001.png", "circle"]])
    with pytest.raises(MaskclfError, match="names 2 files"):  # in train/ and test/: the path must say which
        relabel(splits, ambiguous, tmp_path / "fixed3")


def test_cli_one_line_error_and_summary(sample_dir, tmp_path, capsys):
    dec = _csv(tmp_path / "d.csv", ["photo", "object", "correct_label"], [["maksssksksss0.png", 1, "without_mask"]])
    assert main(["data", "relabel", str(sample_dir), "--decisions", str(dec), "--out", str(tmp_path / "f")]) == 0
    assert "1 label(s) changed (with_mask -> without_mask 1)" in capsys.readouterr().out
    assert main(["data", "relabel", str(sample_dir), "--decisions", str(dec), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and len(err.splitlines()) == 1


def test_a_decision_on_a_broken_annotation_says_what_is_wrong(tmp_path):
    import shutil

    root = tmp_path / "voc"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    shutil.copy(sample / "annotations" / "maksssksksss0.xml", root / "annotations")
    shutil.copy(next((sample / "images").glob("maksssksksss0.*")), root / "images")
    (root / "annotations" / "broken.xml").write_text("<annotation><object>")
    dec = _csv(tmp_path / "d.csv", ["photo", "object", "correct_label"], [["broken.png", 0, "with_mask"]])
    with pytest.raises(MaskclfError, match="line 2: .*broken.xml: malformed XML"):
        relabel(root, dec, tmp_path / "fixed")
    ok = _csv(tmp_path / "ok.csv", ["photo", "object", "correct_label"], [["maksssksksss0.png", 1, "without_mask"]])
    assert relabel(root, ok, tmp_path / "fixed")["changed"] == 1  # the broken file only matters when named
