"""data.detector_train: YuNet-framed copies of the training split's VOC faces (maskclf.research.detector_crops)."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")

from conftest import SAMPLE, make_class_folders  # noqa: E402

from maskclf.config import Config, apply_overrides  # noqa: E402
from maskclf.data import sources  # noqa: E402
from maskclf.files import MaskclfError  # noqa: E402


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    cfg = apply_overrides(Config(), {"data.path": str(SAMPLE)})
    ds = sources.load_data(cfg.data, progress=False)
    return cfg, ds, sources.assign_splits(ds, cfg.data)


def test_training_faces_get_a_copy_framed_by_yunet_and_nothing_else_changes(sample, monkeypatch, tmp_path):
    from maskclf.data.images import crop_face, load_rgb
    from maskclf.edge.detector import create_detector
    from maskclf.research import detector_crops as D
    from maskclf.training.train import add_training_images

    monkeypatch.setenv("MASKCLF_CACHE", str(tmp_path / "cache"))
    cfg, ds, splits = sample
    out, new = add_training_images(ds, splits, apply_overrides(cfg, {"data.detector_train": True}).data)
    n = len(ds.paths)
    assert out.paths[:n] == ds.paths and new[:n] == splits  # the dataset's own faces and splits are untouched
    added = range(n, len(out.paths))
    train = [i for i, s in enumerate(splits) if s == "train"]
    assert all(new[j] == "train" for j in added) and 0.5 * len(train) < len(added) <= len(train)
    assert any("YuNet-framed copies" in k and v == len(added) for k, v in out.notes.items())
    detector = create_detector("yunet")
    for j in list(added)[::25]:  # each copy: a training face's label, group and photo, cropped on a YuNet box
        twin = [i for i in train if Path(ds.paths[i]).name == Path(out.paths[j]).name.removeprefix("yunet-")
                and ds.sources[i] == out.sources[j]]
        assert len(twin) == 1 and (out.labels[j], out.groups[j]) == (ds.labels[twin[0]], ds.groups[twin[0]])
        photo = load_rgb(out.sources[j])
        want = np.asarray(load_rgb(out.paths[j]))
        crops = [np.asarray(crop_face(photo, tuple(b[:4]), cfg.data.crop_margin)) for b in
                 detector.detect(np.asarray(photo))]
        assert any(c.shape == want.shape and np.array_equal(c, want) for c in crops)
        assert not np.array_equal(np.asarray(load_rgb(ds.paths[twin[0]])), want)  # another framing
    # Cached: a second call finds every crop without running YuNet.
    monkeypatch.setattr("maskclf.edge.detector.create_detector", lambda *a, **k: pytest.fail("YuNet ran again"))
    again, _ = D.add_detector_crops(ds, splits, cfg.data.crop_margin)
    assert again.paths == out.paths


def test_a_dataset_without_voc_photos_is_a_one_line_error(tmp_path):
    from maskclf.research.detector_crops import add_detector_crops

    root = make_class_folders(tmp_path / "folders", ("with_mask", "without_mask"), 6)
    cfg = apply_overrides(Config(), {"data.path": str(root)})
    ds = sources.load_data(cfg.data, progress=False)
    with pytest.raises(MaskclfError, match="no training faces cropped from VOC photos.*Set it to false"):
        add_detector_crops(ds, sources.assign_splits(ds, cfg.data), cfg.data.crop_margin)


def test_voc_faces_held_out_of_training_add_nothing_and_are_no_error(sample):
    # cv --by-source with the VOC source held out: its faces are all test, so there is nothing to frame.
    from maskclf.research.detector_crops import add_detector_crops

    cfg, ds, splits = sample
    held = ["test"] * len(splits)
    out, new = add_detector_crops(ds, held, cfg.data.crop_margin)
    assert out.paths == ds.paths and new == held


@pytest.mark.parametrize("extra, voc, want", [
    ([], True, True),                                 # lite0's recipe on VOC photos: YuNet-framed copies too
    ([], False, False),                               # crop folders: nothing to frame, so the recipe leaves it off
    (["data.detector_train=false"], True, False),     # what the user sets wins
    (["--model", "maskclf_cnn"], True, False)])       # the CNN's recipe does not bring it
def test_lite0s_recipe_frames_voc_faces_only_where_there_are_voc_photos(tmp_path, extra, voc, want):
    from maskclf.cli import build_parser
    from maskclf.commands import _build_config

    data = SAMPLE if voc else make_class_folders(tmp_path / "crops", ("with_mask", "without_mask"), 2)
    model = [] if "--model" in extra else ["--model", "efficientnet_lite0"]
    args = build_parser().parse_args(["train", "--data", str(data), *model, *extra])
    assert _build_config(args).data.detector_train is want
