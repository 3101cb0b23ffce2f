import pytest
import yaml

from maskclf import config as C
from maskclf.files import MaskclfError


def test_overrides_set_nested_and_bare_keys():
    cfg = C.apply_overrides(C.Config(), ["epochs=3", "data.image_size=48", "model.filters=[8,16]",
                                         "brightness_range=[0.9,1.1]", "class_map={a: b}"])
    assert cfg.train.epochs == 3
    assert cfg.data.image_size == 48
    assert cfg.model.options == {"filters": [8, 16]}
    assert cfg.augment.brightness_range == (0.9, 1.1)
    assert cfg.data.class_map == {"a": "b"}


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 reads 3e-4 as a string; users write learning rates that way on the command line and in files.
    cfg = C.apply_overrides(C.Config(), ["train.learning_rate=3e-4", "label_smoothing=1E-1"])
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.train.label_smoothing == pytest.approx(0.1)
    (tmp_path / "c.yaml").write_text("train:\n  learning_rate: 5e-4\n")
    assert C.load_config(tmp_path / "c.yaml").train.learning_rate == pytest.approx(5e-4)
    for bad in ("train.learning_rate=fast", "train.learning_rate=nan"):
        with pytest.raises(MaskclfError, match="train.learning_rate: expected a number"):
            C.apply_overrides(C.Config(), [bad])


@pytest.mark.parametrize("bad, words", [
    ("nonsense=1", "unknown config key 'nonsense'"),
    ("train.epochs=many", "train.epochs: expected an integer"),
    ("train.optimizer=magic", "train.optimizer"),
    ("data.layout=zip", "data.layout"),
    ("epochs", "expected key=value"),
    ("horizontal_flip=maybe", "expected true/false"),
])
def test_bad_overrides_are_one_line_errors(bad, words):
    with pytest.raises(MaskclfError) as e:
        C.apply_overrides(C.Config(), [bad])
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(MaskclfError, match="train.learning_rate"):
        C.apply_overrides(C.Config(), ["lr=0.1"])


def test_yaml_round_trip_and_fingerprint(tmp_path):
    cfg = C.apply_overrides(C.Config(), ["epochs=7", "model.dropout=0.4"])
    C.save_config(cfg, tmp_path / "c.yaml")
    back = C.load_config(tmp_path / "c.yaml")
    assert back == cfg
    assert back.fingerprint() == cfg.fingerprint()
    # The output folder does not change what is trained.
    assert C.apply_overrides(cfg, ["out=elsewhere"]).fingerprint() == cfg.fingerprint()
    assert C.apply_overrides(cfg, ["epochs=8"]).fingerprint() != cfg.fingerprint()


def test_config_file_with_unknown_key_or_section(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"train": {"epochz": 3}}))
    with pytest.raises(MaskclfError, match="unknown key train.epochz"):
        C.load_config(p)
    p.write_text(yaml.safe_dump({"trian": {"epochs": 3}}))
    with pytest.raises(MaskclfError, match="unknown section 'trian'"):
        C.load_config(p)
    p.write_text("train: [unclosed")
    with pytest.raises(MaskclfError, match="not valid YAML"):
        C.load_config(p)
    with pytest.raises(MaskclfError, match="not found"):
        C.load_config(tmp_path / "missing.yaml")


def test_late_fields_keep_old_fingerprints_at_their_legacy_value():
    # 49d8e5d45180: the default configuration's fingerprint before mixup, sampling, weight averaging and
    # init_from existed (session 3). Those fields at their legacy values must keep it, so older runs are
    # still resumed and found by compare/cv, whatever the new defaults become.
    legacy = [f"{s}.{k}={v}" for (s, k), v in C.LATE_FIELDS.items() if k in
              ("mixup_alpha", "cutmix_alpha", "mix_probability", "sampling", "weight_average")]
    legacy.append("model.name=seed004_cnn")  # the default model until session 10
    for start in ("none", ""):  # both spell the random start older runs had
        assert C.apply_overrides(C.Config(), [*legacy, f"model.init_from={start}"]).fingerprint() == "49d8e5d45180"
    # The bundled start (the default since session 4) is a different configuration from those runs.
    assert C.Config().fingerprint() != "49d8e5d45180"
    assert C.apply_overrides(C.Config(), ["train.weight_average=0.99"]).fingerprint() != "49d8e5d45180"


def test_new_bundled_weights_give_new_fingerprints(monkeypatch):
    # 7693cb7e8516: the default configuration with the first shipped start (session 4). Shipping another file
    # for the default model must not let new runs resume or stand in for runs made from the first one.
    first = C.Config().fingerprint()
    old = C.apply_overrides(C.Config(), ["model.name=seed004_cnn"])
    if C.BUNDLED["seed004_cnn"] in C.FIRST_BUNDLED:
        assert old.fingerprint() == "7693cb7e8516"
    assert first != old.fingerprint()  # the default model changed in session 10: new runs
    name = C.Config().model.name
    monkeypatch.setitem(C.BUNDLED, name, f"{name}-35-something-else.keras")
    assert C.Config().fingerprint() not in (first, "7693cb7e8516")
    assert C.apply_overrides(C.Config(), ["model.init_from=none"]).fingerprint() != C.Config().fingerprint()


def test_unset_learning_rate_is_gentler_for_trained_starts(tmp_path):
    cfg = C.Config()  # maskclf_cnn from its bundled start
    assert cfg.train.learning_rate is None and C.learning_rate(cfg) == pytest.approx(3e-4)
    assert C.learning_rate(C.apply_overrides(cfg, ["model.init_from=none"])) == pytest.approx(1e-3)
    assert C.learning_rate(C.apply_overrides(cfg, ["model.name=small_cnn"])) == pytest.approx(1e-3)  # ships none
    assert C.learning_rate(C.apply_overrides(cfg, ["model.init_from=runs/x"])) == pytest.approx(3e-4)
    assert C.learning_rate(cfg, started=False) == pytest.approx(1e-3)  # the bundled start fitted no layer
    assert C.learning_rate(C.apply_overrides(cfg, ["train.learning_rate=0.01"]), started=True) == 0.01
    # The fingerprint records the rate the default stands for: an explicit equal rate is the same run, and
    # random-start runs made when the default was 1e-3 are still found.
    assert C.apply_overrides(cfg, ["train.learning_rate=3e-4"]).fingerprint() == cfg.fingerprint()
    scratch = C.apply_overrides(cfg, ["model.init_from=none"])
    assert C.apply_overrides(scratch, ["train.learning_rate=0.001"]).fingerprint() == scratch.fingerprint()
    C.save_config(cfg, tmp_path / "c.yaml")
    assert C.load_config(tmp_path / "c.yaml").train.learning_rate is None
