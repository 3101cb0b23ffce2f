"""Several sources at once (issue 24): loading, class matching, duplicates across sources, splits per source,
per-source metrics, leave-one-source-out."""

import json
import shutil
from collections import Counter

import numpy as np
import pytest
from conftest import make_class_folders

from maskclf import config as C
from maskclf.data import sources
from maskclf.cli import main
from maskclf.reports.evaluate import per_source_metrics
from maskclf.files import MaskclfError

# --model: one network (without it, train and cv give the two-family default ensemble)
TINY = ["--model", "maskclf_cnn", "model.filters=[4,8]", "model.convs_per_block=1", "model.dense_units=[8]", "data.image_size=32"]


def _data(path, *more, **keys):
    return C.apply_overrides(C.Config(), {**C.data_overrides([str(path), *map(str, more)]),
                                          **{f"data.{k}": v for k, v in keys.items()}}).data


@pytest.fixture
def two_sources(tmp_path):
    """A: circle/square/triangle (3 classes); B: circle/square only, other pictures (seed)."""
    a = make_class_folders(tmp_path / "a", classes=("circle", "square", "triangle"), per_class=14, seed=1)
    b = make_class_folders(tmp_path / "b", classes=("circle", "square"), per_class=14, seed=2)
    return a, b


def test_two_sources_load_as_one_with_origins_and_a_per_source_report(two_sources):
    a, b = two_sources
    cfg = _data(a, b)
    ds = sources.load_data(cfg, progress=False)
    assert ds.class_names == ["circle", "square", "triangle"]
    assert Counter(ds.origins) == {"a": 42, "b": 28}
    assert all(g.startswith(o + ":") for g, o in zip(ds.groups, ds.origins))
    # B's "square" is A's "square": labels are matched by name
    assert {ds.class_names[y] for y, o in zip(ds.labels, ds.origins) if o == "b"} == {"circle", "square"}
    splits = sources.assign_splits(ds, cfg)
    for o in ("a", "b"):  # every source reaches every split (each is split by its own rules)
        assert {s for s, x in zip(splits, ds.origins) if x == o} == {"train", "validation", "test"}
    text = sources.summarize(ds, splits)
    assert "per source:" in text and "b " in text


def test_one_source_keeps_its_layout_and_names_its_origin(shapes_dir):
    ds = sources.load_data(_data(shapes_dir), progress=False)
    assert ds.layout == "folders" and set(ds.origins) == {"shapes"}


def test_a_class_the_first_source_lacks_is_an_error_naming_source_and_class(two_sources, tmp_path):
    a, b = two_sources
    (b / "square").rename(b / "box")
    with pytest.raises(MaskclfError, match=r"class 'box' of source b is not a class of a .*class_map"):
        sources.load_data(_data(a, b), progress=False)
    # ... and mapping it per source fixes it
    cfg = C.apply_overrides(C.Config(), {"data.path": str(a),
                                         "data.sources": [{"path": str(b), "class_map": {"box": "square"}}]}).data
    ds = sources.load_data(cfg, progress=False)
    assert Counter(ds.class_names[y] for y, o in zip(ds.labels, ds.origins) if o == "b") == {"circle": 14,
                                                                                             "square": 14}


def test_a_source_that_cannot_be_read_is_named(two_sources, tmp_path):
    a, _ = two_sources
    with pytest.raises(MaskclfError, match=r"^source nowhere: .*nowhere: data folder not found"):
        sources.load_data(_data(a, tmp_path / "nowhere"), progress=False)
    with pytest.raises(MaskclfError, match=r"data\.sources\[0\]"):
        C.apply_overrides(C.Config(), {"data.sources": [{"folder": "x"}]})


def test_duplicates_across_sources_share_a_group_and_one_side_of_the_split(two_sources):
    a, b = two_sources
    for f in sorted((a / "circle").glob("*.png"))[:6]:  # B holds copies of 6 of A's circles
        shutil.copy(f, b / "circle" / f"copy_{f.name}")
    cfg = _data(a, b)
    ds = sources.load_data(cfg, progress=False)
    assert ds.notes["image pairs duplicated across sources (grouped together)"] >= 6
    copies = [i for i, p in enumerate(ds.paths) if "copy_" in p]
    for i in copies:
        twin = ds.paths.index(ds.paths[i].replace(str(b), str(a)).replace("copy_", ""))
        assert ds.groups[i] == ds.groups[twin]
    for seed in range(4):
        splits = sources.assign_splits(ds, C.apply_overrides(C.Config(), {**C.data_overrides([str(a), str(b)]),
                                                                           "data.split_seed": seed}).data)
        sides = {}
        for g, s in zip(ds.groups, splits):
            if s != "drop":
                sides.setdefault(g, set()).add(s)
        assert all(len(v) == 1 or "train" not in v for v in sides.values())


def test_leave_one_out_keeps_the_classes_training_has(two_sources):
    a, b = two_sources
    ds = sources.load_data(_data(a, b), progress=False)
    fold, splits, left_out = sources.leave_one_out(ds, "a", 0.2, 0)
    assert fold.class_names == ["circle", "square"]  # B has no triangle: A's 14 triangles cannot be scored
    assert left_out == 14
    assert Counter(s for s, o in zip(splits, fold.origins) if o == "a") == {"test": 28}
    assert {s for s, o in zip(splits, fold.origins) if o == "b"} == {"train", "validation"}
    fold, splits, left_out = sources.leave_one_out(ds, "b", 0.2, 0)
    assert fold.class_names == ["circle", "square", "triangle"] and left_out == 0
    with pytest.raises(MaskclfError, match="no source named 'c'"):
        sources.leave_one_out(ds, "c", 0.2, 0)


def test_per_source_metrics_score_a_two_class_source_on_its_own_classes():
    names = ["a", "b", "c"]
    y = np.array([0, 1, 2, 0, 1, 0])
    p = np.eye(3)[[0, 1, 2, 2, 1, 0]]  # source t: one "a" called "c" (a class t lacks): an error
    m = per_source_metrics(y, p, names, ["s", "s", "s", "t", "t", "t"])
    assert m["s"]["balanced_accuracy"] == 1.0 and m["s"]["classes"] == ["a", "b", "c"]
    assert m["t"]["classes"] == ["a", "b"] and m["t"]["recall"] == {"a": 0.5, "b": 1.0}
    assert m["t"]["balanced_accuracy"] == 0.75 and m["t"]["num_samples"] == 3


def test_cli_trains_on_two_sources_and_cv_by_source_holds_each_out(two_sources, tmp_path, capsys):
    a, b = two_sources
    runs = tmp_path / "runs"
    assert main(["train", "--data", str(a), "--data", str(b), "--epochs", "1", "--out", str(runs), "--quiet",
                 *TINY]) == 0
    run = next(runs.iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["per_source"]) == {"a", "b"}
    assert m["per_source"]["b"]["classes"] == ["circle", "square"]
    assert sum(v["num_samples"] for v in m["per_source"].values()) == m["num_samples"]
    assert "dataset" in (run / "split.csv").read_text().splitlines()[0]
    assert C.load_config(run / "config.yaml").data.sources == (str(b),)
    capsys.readouterr()
    out = tmp_path / "loso"
    assert main(["cv", "--by-source", "--data", str(a), "--data", str(b), "--epochs", "1", "--out", str(out),
                 "--quiet", *TINY]) == 0
    text = capsys.readouterr().out
    assert "Leave-one-source-out" in text and "| a | b | 28 (14 left out) |" in text
    summary = json.loads((out / "cv.json").read_text())
    assert [r["held_out"] for r in summary["per_source"]] == ["a", "b"]
    assert (out / "heldout-a").is_dir() and (out / "heldout-b").is_dir()
    # Running it again finds both folds finished: nothing is retrained
    before = sorted(p.name for p in (out / "heldout-a").iterdir())
    assert main(["cv", "--by-source", "--data", str(a), "--data", str(b), "--epochs", "1", "--out", str(out),
                 "--quiet", *TINY]) == 0
    assert sorted(p.name for p in (out / "heldout-a").iterdir()) == before
    assert main(["cv", "--by-source", "--data", str(a), "--epochs", "1", "--out", str(out), "--quiet", *TINY]) != 0
    assert "needs at least two sources" in capsys.readouterr().err
