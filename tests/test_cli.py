import json
import subprocess
import sys

import pytest

from maskclf.cli import main


def test_import_maskclf_does_not_import_tensorflow():
    code = "import sys, maskclf, maskclf.data.images, maskclf.data.voc, maskclf.config; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_help_mentions_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for c in ["train", "evaluate", "predict", "data", "models"]:
        assert c in out


def test_data_inspect_on_the_sample(capsys, sample_dir):
    assert main(["data", "inspect", str(sample_dir)]) == 0
    out = capsys.readouterr().out
    assert "layout:  voc" in out and "mask_weared_incorrect" in out and "problems: none" in out


@pytest.mark.parametrize("argv, words", [
    (["data", "inspect", "/no/such/folder"], "data folder not found"),
    (["train", "--data", "/no/such/folder"], "data folder not found"),
    (["train", "--epochs", "2", "lr=3"], "unknown config key 'lr'"),
    (["train", "--model", "resnet9000"], "unknown model"),
    (["evaluate", "/no/run"], "run directory not found"),
])
def test_bad_input_is_one_line_without_traceback(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("maskclf: error:")]
    assert len(errors) == 1 and words in errors[0]
    assert "Traceback" not in err


def test_train_evaluate_predict_on_the_sample(tmp_path, capsys, sample_dir):
    out = tmp_path / "runs"
    rc = main(["train", "--data", str(sample_dir), "--epochs", "2", "--out", str(out), "--image-size", "32",
               "--quiet", "--model", "maskclf_cnn", "model.filters=[8,16]", "model.convs_per_block=1"])
    assert rc == 0
    text = capsys.readouterr().out
    (run,) = list(out.iterdir())
    assert f"run directory: {run}" in text and "balanced accuracy" in text
    assert main(["evaluate", str(run), "--quiet"]) == 0
    assert "balanced accuracy" in capsys.readouterr().out
    crops = [line.split(",")[0] for line in (run / "split.csv").read_text().splitlines()[1:4]]
    (tmp_path / "bad.jpg").write_text("not an image")
    assert main(["predict", str(run), *crops, str(tmp_path / "bad.jpg"), "--json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert len(res) == 4
    good = [r for r in res if "label" in r]
    assert len(good) == 3
    assert all(r["label"] in ("mask_weared_incorrect", "with_mask", "without_mask") for r in good)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in good)
    assert "bad.jpg" in [r for r in res if "error" in r][0]["error"]


def test_config_command_prints_loadable_yaml_that_explains_the_unset_learning_rate(capsys, tmp_path):
    from maskclf import config as C

    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "learning_rate: null  # = 0.0003 here" in out
    (tmp_path / "c.yaml").write_text(out)
    assert C.load_config(tmp_path / "c.yaml") == C.Config()  # the comment does not change what it loads


def test_a_model_chosen_on_the_command_line_brings_its_size_and_recipe_unless_the_user_set_them():
    from maskclf.cli import build_parser
    from maskclf.commands import _build_config

    parse = build_parser().parse_args
    cfg = _build_config(parse(["train", "--model", "efficientnet_lite0"]))
    assert (cfg.data.image_size, cfg.model.weights, cfg.train.epochs, cfg.train.fine_tune_epochs,
            cfg.train.fine_tune_learning_rate) == (96, "imagenet", 5, 8, 1e-4)
    cfg = _build_config(parse(["train", "--model", "efficientnet_lite0", "--epochs", "2", "--image-size", "64",
                               "weights=null", "train.fine_tune_epochs=0"]))
    assert (cfg.data.image_size, cfg.model.weights, cfg.train.epochs, cfg.train.fine_tune_epochs,
            cfg.train.learning_rate) == (64, None, 2, 0, 1e-3)
    cfg = _build_config(parse(["train", "--model", "vgg19"]))
    assert (cfg.data.image_size, cfg.model.weights, cfg.train.epochs) == (64, None, 40)  # no recipe: the defaults
