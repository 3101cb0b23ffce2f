import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

keras_tuner = pytest.importorskip("keras_tuner")
keras = pytest.importorskip("keras")

from conftest import REPO, make_class_folders  # noqa: E402
from maskclf.tuning import tune as T  # noqa: E402
from maskclf.cli import main  # noqa: E402
from maskclf.config import load_config  # noqa: E402
from maskclf.files import MaskclfError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning",  # inside keras-tuner 1.4.8
                                        "ignore:getName:DeprecationWarning")

# Tiny nets on 32 px shapes: a trial takes a few seconds on 2 cores.
TINY = {
    "model.filters": {"choice": [4, 8]},
    "model.blocks": 2,
    "model.convs_per_block": 1,
    "model.dense_units": {"choice": [[8], [8, 4]]},
    "model.dropout": {"float": [0.1, 0.3], "step": 0.1},
    "train.learning_rate": {"float": [1.0e-3, 1.0e-2], "sampling": "log"},
    "train.batch_size": {"choice": [8, 16]},
    "train.optimizer": {"choice": ["adam", "rmsprop"]},
    "augment.zoom_range": {"choice": [0.0, 0.1]},
    "train.patience": 5,
    "data.image_size": 32,
    "data.val_fraction": 0.25,
    "data.test_fraction": 0.2,
}


def write_space(path, hyperparameters=None, **top):
    raw = {"model": "small_cnn", "tuner": "random", **top, "hyperparameters": hyperparameters or dict(TINY)}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def read_trials(directory):
    with open(directory / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("data") / "shapes", ("circle", "square"), 15)


# ----------------------------------------------------------------------------- spaces

def _default_members() -> list:
    """The configurations `maskclf train --data DATA` gives the default ensemble's members."""
    from maskclf.cli import build_parser
    from maskclf.commands import _member_configs

    return _member_configs(build_parser().parse_args(["train", "--data", str(REPO / "data" / "sample")]))


def test_shipped_spaces_load_and_cover_seed_report_003():
    spaces = {f: T.load_space(REPO / "tuning" / f"{f}.yaml") for f in ("small_cnn", "vgg19", "efficientnet", "mobilenet")}
    assert {s.model for s in spaces.values()} == {"maskclf_cnn", "vgg19", "efficientnet_b0", "mobilenet_v2"}
    p = {x.key: x for x in spaces["small_cnn"].params}
    assert p["model.filters"].values == (24, 32, 64, 96)
    # The first trial is the package default recipe (maskclf_cnn at 35 px from its bundled start, at 3e-4).
    centre = {k: x.default for k, x in p.items() if x.default is not None}
    assert centre["model.filters"] == 32 and centre["data.image_size"] == 35 and centre["model.pooling"] == "flatten"
    assert centre["model.dense_units"] == [256] and centre["model.dropout"] == 0.5
    assert centre["model.convs_per_block"] == 2 and centre["train.learning_rate"] == pytest.approx(3e-4)
    from maskclf.config import Config
    from maskclf.models.registry import get_spec
    spec = get_spec(spaces["small_cnn"].model)
    assert spaces["small_cnn"].model == Config().model.name
    assert [centre["model.filters"] * 2 ** i for i in range(centre["model.blocks"])] == spec.defaults["filters"]
    for k in ("convs_per_block", "pooling", "dense_units", "dropout", "batch_norm"):
        assert centre[f"model.{k}"] == spec.defaults[k], k
    # ... and trains as the default ensemble's maskclf_cnn member does (its size, augmentation)
    member = _default_members()[0]
    assert member.model.name == spaces["small_cnn"].model
    trial = spaces["small_cnn"].config(Config(), centre, member.train.epochs)
    assert trial.augment == member.augment and trial.data.image_size == member.data.image_size
    assert p["train.batch_size"].values == (23, 32, 46)
    assert (p["model.dropout"].low, p["model.dropout"].high) == (0.2, 0.5)
    assert [64, 32] in p["model.dense_units"].values and [128] in p["model.dense_units"].values
    assert set(p["train.optimizer"].values) == {"adam", "rmsprop", "sgd", "adadelta"}
    assert {"relu", "tanh", "leaky_relu"} <= set(p["model.activation"].values)
    assert p["model.batch_norm"].kind == "boolean"
    assert p["train.learning_rate"].sampling == "log"
    assert p["data.image_size"].kind == "choice" and p["augment.shear_range"].kind == "choice"
    assert (REPO / "tuning" / "README.md").is_file()


def test_lite0_space_is_centred_on_what_the_default_ensemble_trains_as_its_second_member():
    """tuning/efficientnet_lite0.yaml: its first trial is the default ensemble's lite0 member (same Config), and
    best.yaml carries the recipe's fine-tuning phase, which trials do not run."""
    import dataclasses
    import inspect

    from maskclf.config import Config
    from maskclf.models.registry import DEFAULT_ENSEMBLE, get_spec

    space = T.load_space(REPO / "tuning" / "efficientnet_lite0.yaml")
    member = _default_members()[1]
    assert space.model == member.model.name == DEFAULT_ENSEMBLE[1]
    centre = {p.key: p.default for p in space.tuned}
    assert None not in centre.values()  # every searched key has its default: the first trial is fully the recipe
    cfg = space.config(Config(), centre, member.train.epochs)
    built = {k: v.default for k, v in inspect.signature(get_spec(member.model.name).builder).parameters.items()
             if k in get_spec(member.model.name).option_names()}  # the member leaves its options at these
    opts = cfg.model.options | {"dense_units": tuple(cfg.model.options["dense_units"])}  # YAML [] = the builder's ()
    assert opts == {k: built[k] for k in opts}
    assert not member.model.options and cfg.model.weights == member.model.weights == "imagenet"
    trial, default = dataclasses.asdict(cfg.train), dataclasses.asdict(member.train)
    assert trial.pop("patience") == 3 and default.pop("patience") == 0  # early stopping ends weak trials only
    assert trial == default and cfg.train.fine_tune_epochs == 8  # so best.yaml fine-tunes as the default does
    assert dataclasses.asdict(cfg.augment) == dataclasses.asdict(member.augment)
    assert cfg.data.image_size == member.data.image_size == 96
    assert cfg.data.detector_train and member.data.detector_train  # VOC photos: YuNet-framed copies too


def test_a_spaces_fixed_data_values_shape_the_data_read_and_detector_framing_needs_voc_photos(tmp_path):
    from maskclf.config import Config, apply_overrides

    space = T.load_space(REPO / "tuning" / "efficientnet_lite0.yaml")
    crops = make_class_folders(tmp_path / "crops", ("with_mask", "without_mask"), 2)
    for data, framed in ((REPO / "data" / "sample", True), (crops, False)):
        sp, read = T.data_of_search(space, apply_overrides(Config(), {"data.path": str(data)}))
        assert read.data.detector_train is framed and sp.fixed.get("data.detector_train", False) is framed
        assert sp.config(Config(), {}, 1).data.detector_train is framed  # so best.yaml trains as the trials did


@pytest.mark.parametrize("change, words", [
    ({"model.dropot": 0.3}, ["model.dropot", "not a model option"]),
    ({"train.learnin_rate": 0.1}, ["train.learnin_rate", "train.learning_rate"]),
    ({"dropout": 0.3}, ["'dropout'", "section.key"]),
    ({"model.dropout": {"range": [0.1, 0.2]}}, ["model.dropout", "unknown kind 'range'"]),
    ({"model.dropout": {"float": [0.5, 0.2]}}, ["model.dropout", "empty"]),
    ({"model.blocks": {"int": [3, 3]}}, ["model.blocks", "empty"]),
    ({"train.batch_size": {"choice": []}}, ["train.batch_size", "empty"]),
    ({"model.dropout": {"float": [0.1, 0.2], "samplng": "log"}}, ["model.dropout", "'samplng'"]),
    ({"train.learning_rate": {"float": [0, 0.01], "sampling": "log"}}, ["train.learning_rate", "positive"]),
    ({"train.optimizer": {"choice": ["adam", "adamax2"]}}, ["train.optimizer", "adamax2"]),
    ({"model.batch_norm": {"choice": [1, 2]}}, ["model.batch_norm", "true/false"]),
    ({"data.path": "/x"}, ["data.path", "--data"]),
    ({"data.crop_margin": {"choice": [0.1, 0.2]}}, ["data.crop_margin", "cannot be tuned"]),
])
def test_bad_space_entries_give_an_error_naming_the_key(tmp_path, change, words):
    path = write_space(tmp_path / "bad.yaml", {**TINY, **change})
    with pytest.raises(MaskclfError) as e:
        T.load_space(path)
    msg = str(e.value)
    assert str(path) in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("top, words", [
    ({"max_trial": 3}, ["'max_trial'", "max_trials"]),
    ({"model": "resnet9000"}, ["'model'", "unknown model"]),
    ({"tuner": "evolution"}, ["'tuner'", "hyperband"]),
    ({"objective": "accuracy"}, ["'objective'", "val_balanced_accuracy"]),
])
def test_bad_top_level_keys_are_named(tmp_path, top, words):
    with pytest.raises(MaskclfError) as e:
        T.load_space(write_space(tmp_path / "bad.yaml", **top))
    assert all(w in str(e.value) for w in words), str(e.value)


def test_cli_reports_a_bad_space_in_one_line(tmp_path, capsys, shapes):
    path = write_space(tmp_path / "bad.yaml", {**TINY, "model.dropout": {"float": [0.5, 0.2]}})
    assert main(["tune", str(path), "--data", str(shapes), "--out", str(tmp_path / "t")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("maskclf: error:")]
    assert len(err) == 1 and "model.dropout" in err[0]


def test_choice_of_lists_round_trips_through_keras_tuner():
    space = T.parse_space({"model": "small_cnn", "hyperparameters": {
        "model.dense_units": {"choice": [[64], [64, 32]], "default": [64, 32]},
        "train.learning_rate": {"float": ["1e-4", "1e-2"], "sampling": "log"}}})  # YAML 1.1 reads 1e-4 as text
    hp = keras_tuner.HyperParameters()
    values = {p.key: p.declare(hp) for p in space.tuned}
    assert values["model.dense_units"] == [64, 32]
    assert 1e-4 <= values["train.learning_rate"] <= 1e-2
    hp.values["model.dense_units"] = "[64]"
    assert space.tuned[0].declare(hp) == [64]


@pytest.mark.parametrize("name, cls", [("random", "RandomSearch"), ("hyperband", "Hyperband"),
                                       ("bayesian", "BayesianOptimization"), ("grid", "GridSearch")])
def test_tuners_by_name(tmp_path, shapes, name, cls):
    from maskclf.config import Config, apply_overrides

    space = T.parse_space({"model": "small_cnn", "hyperparameters": TINY})
    base = apply_overrides(Config(), {"data.path": str(shapes), **{k: v for k, v in TINY.items()
                                                                    if not isinstance(v, dict)}})
    hm = T.MaskHyperModel(space, base, T.SearchData(base, progress=False), 2)
    tuner = T.make_tuner(name, hm, "val_balanced_accuracy", tmp_path, 5, 2)
    assert isinstance(tuner, getattr(keras_tuner, cls))
    assert tuner.oracle.objective.name == "val_balanced_accuracy" and tuner.oracle.objective.direction == "max"
    assert tuner.oracle.max_trials == 5


# ----------------------------------------------------------------------------- search

def test_search_writes_trials_plot_and_a_best_config_that_train_accepts(tmp_path, shapes, monkeypatch, capsys):
    from maskclf.data import datasets, images, splitting
    from maskclf.config import Config, apply_overrides

    decoded = []
    real = images.load_array
    monkeypatch.setattr(images, "load_array", lambda *a, **k: decoded.append(a[0]) or real(*a, **k))
    out = tmp_path / "search"
    space = write_space(tmp_path / "tiny.yaml")
    assert main(["tune", str(space), "--data", str(shapes), "--max-trials", "3", "--max-epochs", "2",
                 "--out", str(out), "--quiet"]) == 0
    assert f"search folder: {out}" in capsys.readouterr().out

    rows = read_trials(out)
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    for col in ["status", "val_balanced_accuracy", "best_epoch", "epochs", "seconds", "tuner_id",
                "model.filters", "model.dense_units", "train.learning_rate", "train.batch_size", "augment.zoom_range"]:
        assert col in rows[0], col
    assert all(r["status"] == "COMPLETED" for r in rows)
    assert all(0.0 <= float(r["val_balanced_accuracy"]) <= 1.0 for r in rows)
    assert all(int(r["epochs"]) in (1, 2) and float(r["seconds"]) > 0 for r in rows)
    assert (out / "objective.png").stat().st_size > 1000
    assert (out / "project" / "oracle.json").is_file() and (out / "tensorboard").is_dir()

    # Images were decoded once for all trials (3 trials x 2 epochs would decode the training set 6 times).
    dcfg = apply_overrides(Config(), {"data.path": str(shapes), "data.val_fraction": 0.25,
                                      "data.test_fraction": 0.2}).data
    splits = splitting.assign_splits(datasets.load_dataset(dcfg, progress=False), dcfg)
    n = splits.count("train") + splits.count("validation")
    assert n <= len(decoded) < 2 * n, (len(decoded), n)

    # best.yaml is the best trial's complete config.
    best = json.loads((out / "best_trial.json").read_text())
    top = max(rows, key=lambda r: float(r["val_balanced_accuracy"]))
    assert float(top["val_balanced_accuracy"]) == pytest.approx(best["score"])
    cfg = load_config(out / "best.yaml")
    assert cfg.model.name == "small_cnn" and cfg.train.epochs == 2 and cfg.data.image_size == 32
    assert cfg.model.options["filters"] == best["hyperparameters"]["model.filters"]
    assert cfg.model.options["dense_units"] == best["hyperparameters"]["model.dense_units"]
    assert cfg.model.options["blocks"] == 2 and cfg.train.patience == 5  # fixed values carried over
    assert cfg.train.batch_size == best["hyperparameters"]["train.batch_size"]
    assert cfg.train.learning_rate == pytest.approx(best["hyperparameters"]["train.learning_rate"])

    runs = tmp_path / "runs"
    assert main(["train", "--config", str(out / "best.yaml"), "--data", str(shapes), "--epochs", "1",
                 "--out", str(runs), "--quiet"]) == 0
    (run,) = list(runs.iterdir())
    assert (run / "metrics.json").is_file()
    assert load_config(run / "config.yaml").model.options == cfg.model.options


@pytest.mark.parametrize("tuner", ["random", "hyperband"])
def test_the_first_trial_is_the_spaces_defaults(tmp_path, shapes, tuner):
    # KerasTuner draws even the first trial at random; the shipped spaces' defaults are the package default
    # recipe, so a search must start there (then every search is at least as good as the default on validation).
    hp = {**TINY, "model.filters": {"choice": [4, 8], "default": 8}, "train.batch_size": {"choice": [8, 16], "default": 16},
          "model.dropout": {"float": [0.1, 0.3], "step": 0.1, "default": 0.2},
          "train.learning_rate": {"float": [1.0e-3, 1.0e-2], "sampling": "log", "default": 3.0e-3}}
    space = write_space(tmp_path / "s.yaml", hp)
    out = T.tune(space, data=shapes, tuner=tuner, max_trials=3, max_epochs=1 if tuner == "random" else 2,
                 out=tmp_path / "t", tensorboard=False, progress=False)
    rows = read_trials(out)
    first = rows[0]
    assert first["model.filters"] == "8" and first["train.batch_size"] == "16"
    assert float(first["model.dropout"]) == pytest.approx(0.2)
    assert float(first["train.learning_rate"]) == pytest.approx(3e-3)
    assert first["model.dense_units"] == "[8]" and first["train.optimizer"] == "adam"  # no default: the first choice
    assert len({tuple(sorted(r.items())) for r in rows}) == len(rows) > 1  # later trials are drawn as before


def test_interrupted_search_resumes_without_redoing_completed_trials(tmp_path, shapes):
    space = write_space(tmp_path / "tiny.yaml")
    out = tmp_path / "search"

    class Stop(keras.callbacks.Callback):
        epochs_seen = []  # class attribute: KerasTuner deep-copies callbacks per trial

        def on_epoch_end(self, epoch, logs=None):
            Stop.epochs_seen.append(epoch)
            if len(Stop.epochs_seen) == 3:  # trial 0 ran 2 epochs; stop in trial 1's first epoch
                raise KeyboardInterrupt

    class Count(keras.callbacks.Callback):
        trials = 0

        def on_train_begin(self, logs=None):
            Count.trials += 1

    with pytest.raises(KeyboardInterrupt):
        T.tune(space, data=shapes, max_trials=3, max_epochs=2, out=out, callbacks=[Stop()],
               tensorboard=False, progress=False)
    rows = read_trials(out)
    assert [(r["trial_id"], r["status"]) for r in rows] == [("0", "COMPLETED"), ("1", "RUNNING")]
    first = json.loads((out / "project" / "trial_0" / T.TRIAL_INFO).read_text())

    T.tune(space, data=shapes, max_trials=3, max_epochs=2, out=out, callbacks=[Count()], tensorboard=False,
           progress=False)
    assert Count.trials == 2  # trial 1 again (it was interrupted) and trial 2; trial 0 kept
    rows = read_trials(out)
    assert [(r["trial_id"], r["status"]) for r in rows] == [(str(i), "COMPLETED") for i in range(3)]
    assert json.loads((out / "project" / "trial_0" / T.TRIAL_INFO).read_text()) == first
    load_config(out / "best.yaml")
    # A finished search run again trains nothing.
    T.tune(space, data=shapes, max_trials=3, max_epochs=2, out=out, callbacks=[Count()], tensorboard=False,
           progress=False)
    assert Count.trials == 2 and len(read_trials(out)) == 3

    # Same folder, different search: refused rather than mixed.
    with pytest.raises(MaskclfError, match="another search"):
        T.tune(space, data=shapes, tuner="grid", max_trials=3, max_epochs=2, out=out, progress=False)


def test_grid_search_with_val_loss_objective(tmp_path, shapes):
    hps = {k: v for k, v in TINY.items() if not isinstance(v, dict)}
    space = write_space(tmp_path / "grid.yaml", {**hps, "model.filters": {"choice": [4, 8]}})
    out = T.tune(space, data=shapes, tuner="grid", objective="val_loss", max_epochs=1, out=tmp_path / "g",
                 tensorboard=False, progress=False)
    rows = read_trials(out)
    assert sorted(r["model.filters"] for r in rows) == ["4", "8"] and "val_loss" in rows[0]
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert load_config(out / "best.yaml").model.options["filters"] == int(best["model.filters"])


def test_trials_can_search_balanced_sampling_with_mixup(tmp_path, shapes):
    hps = {k: v for k, v in TINY.items() if not isinstance(v, dict)}
    space = write_space(tmp_path / "grid.yaml", {**hps, "model.filters": 4, "augment.mixup_alpha": 0.2,
                                                 "train.sampling": {"choice": ["shuffle", "balanced"]}})
    out = T.tune(space, data=shapes, tuner="grid", max_epochs=1, out=tmp_path / "g", tensorboard=False,
                 progress=False)
    rows = read_trials(out)
    assert sorted(r["train.sampling"] for r in rows) == ["balanced", "shuffle"]
    assert all(0 <= float(r["val_balanced_accuracy"]) <= 1 for r in rows)
    assert load_config(out / "best.yaml").augment.mixup_alpha == 0.2


# ----------------------------------------------------------------------------- distributed

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Chief and workers as `python -m maskclf.cli tune` subprocesses; everything is killed at the end."""

    def __init__(self, tmp_path, shapes, max_trials=4, max_epochs=2):
        self.tmp = tmp_path
        self.space = write_space(tmp_path / "tiny.yaml")
        self.out = tmp_path / "search"
        self.port = _free_port()
        self.common = ["--data", str(shapes), "--out", str(self.out), "--max-trials", str(max_trials),
                       "--max-epochs", str(max_epochs), "--oracle", f"127.0.0.1:{self.port}"]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
        self.env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        self.procs = {}
        self.runs = 0

    def start(self, name, role):
        self.runs += 1
        log = self.tmp / f"{name}-{self.runs}.log"
        extra = ["--distributed", role] + (["--tuner-id", name] if role == "worker" else [])
        cmd = [sys.executable, "-m", "maskclf.cli", "tune", str(self.space), *self.common, *extra]
        with open(log, "w") as f:
            self.procs[name] = (subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=self.env,
                                                 start_new_session=True), log)

    def log(self, name) -> str:
        return self.procs[name][1].read_text(errors="replace")

    def wait_for(self, condition, deadline, what):
        while not condition():
            dead = [n for n, (p, _) in self.procs.items() if p.poll() not in (None, 0)]
            if dead:
                pytest.fail(f"{dead[0]} exited with {self.procs[dead[0]][0].returncode} while waiting for "
                            f"{what}:\n{self.log(dead[0])[-3000:]}")
            if time.time() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n" + "\n".join(
                    f"--- {n}\n{self.log(n)[-1500:]}" for n in self.procs))
            time.sleep(0.2)

    def searching(self, name):
        return lambda: f"as {name}," in self.log(name)

    def finish(self, deadline):
        self.wait_for(lambda: all(p.poll() is not None for p, _ in self.procs.values()), deadline, "the end")
        for n, (p, _) in self.procs.items():
            assert p.returncode == 0, f"{n} exited with {p.returncode}:\n{self.log(n)[-3000:]}"

    def kill(self, name):
        p = self.procs[name][0]
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)

    def close(self):
        for name in self.procs:
            self.kill(name)


@pytest.fixture
def cluster(tmp_path, shapes):
    c = Cluster(tmp_path, shapes)
    yield c
    c.close()


def _start_search(cluster, deadline):
    # Workers first: they block until the chief answers, so both are waiting when it starts and both get trials.
    cluster.start("w1", "worker")
    cluster.start("w2", "worker")
    cluster.wait_for(lambda: cluster.searching("w1")() and cluster.searching("w2")(), deadline, "workers ready")
    cluster.start("chief", "chief")


def _check_complete_search(out, max_trials=4):
    rows = read_trials(out)
    assert len(rows) == max_trials and all(r["status"] == "COMPLETED" for r in rows), rows
    oracle = json.loads((out / "project" / "oracle.json").read_text())
    assert len(oracle["end_order"]) == max_trials and not oracle["ongoing_trials"]
    load_config(out / "best.yaml")
    return rows


def test_distributed_search_chief_and_two_workers(cluster):
    deadline = time.time() + 300
    _start_search(cluster, deadline)
    cluster.finish(deadline)
    rows = _check_complete_search(cluster.out)
    assert {r["tuner_id"] for r in rows} == {"w1", "w2"}  # both workers ran trials
    assert "finished" in cluster.log("w1") and "best val_balanced_accuracy" in cluster.log("chief")


@pytest.mark.slow
def test_distributed_search_survives_a_worker_killed_mid_trial(cluster):
    deadline = time.time() + 400
    _start_search(cluster, deadline)
    project = cluster.out / "project"

    def w1_running():
        for f in project.glob(f"trial_*/{T.TRIAL_INFO}"):
            try:
                info = json.loads(f.read_text())
            except ValueError:
                continue
            if info.get("tuner_id") == "w1" and info.get("status") == "running":
                return f.parent.name
        return None

    cluster.wait_for(lambda: w1_running() is not None, deadline, "a trial on w1")
    killed = w1_running()
    cluster.kill("w1")
    assert cluster.procs["w1"][0].returncode == -signal.SIGKILL
    cluster.start("w1", "worker")  # the same name takes its unfinished trial again
    cluster.finish(deadline)
    rows = _check_complete_search(cluster.out)
    assert {r["tuner_id"] for r in rows} >= {"w1"}
    assert json.loads((project / killed / T.TRIAL_INFO).read_text())["status"] == "done"


def test_distributed_flags_are_checked():
    with pytest.raises(MaskclfError, match="HOST:PORT"):
        T.distributed_env("worker", "localhost", "w1")
    with pytest.raises(MaskclfError, match="tuner-id"):
        T.distributed_env("worker", "127.0.0.1:8000", None)
    assert T.distributed_env("chief", "10.0.0.1:8000") == {
        "KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "10.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}


def test_tune_refuses_distillation_in_one_line(tmp_path, capsys, shapes):
    path = write_space(tmp_path / "space.yaml", TINY)
    assert main(["tune", str(path), "train.distill_from=somewhere", "--data", str(shapes),
                 "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "train.distill_from is not used by `maskclf tune`" in err
    assert not (tmp_path / "t").exists()


def test_trials_apply_sam_and_l2sp_as_maskclf_train_does(tmp_path, shapes, monkeypatch):
    import numpy as np

    import maskclf.training.callbacks as CB
    import maskclf.training.train as TR
    from maskclf.config import Config, apply_overrides

    fixed = {k: v for k, v in TINY.items() if not isinstance(v, dict)}
    arch = {"model.filters": 4, "model.dense_units": [8]}
    start = TR.train(apply_overrides(Config(), {"data.path": str(shapes), "train.out": str(tmp_path / "start"),
                                                "model.name": "small_cnn", "train.epochs": 1, **fixed, **arch}),
                     progress=False)
    sam, pulled = [], []
    real_use_sam = TR.use_sam
    monkeypatch.setattr(TR, "use_sam", lambda model, rho: (sam.append(rho), real_use_sam(model, rho)))

    class Recording(CB.PullToStart):
        def on_train_end(self, logs=None):
            pulled.append(max(float(np.abs(v.numpy() - w0.numpy()).max()) for v, w0 in zip(self._vars, self._start)))

    monkeypatch.setattr(CB, "PullToStart", Recording)
    space = write_space(tmp_path / "one.yaml", {**fixed, **arch, "train.learning_rate": 1e-3, "train.batch_size": 8,
                                                "train.optimizer": "adam", "augment.zoom_range": 0.0,
                                                "model.dropout": 0.1, "train.lr_schedule": "constant",
                                                "train.sam_rho": 0.05, "train.l2sp": 1e6})
    T.tune(space, data=shapes, overrides=["model.init_from=" + str(start)], tuner="grid", max_epochs=1,
           out=tmp_path / "t", tensorboard=False, progress=False)
    # The model is built twice (once to list the space); at full strength and a constant rate the trial never
    # leaves its start.
    assert set(sam) == {0.05} and pulled == [0.0]
    with pytest.raises(MaskclfError, match="train.l2sp .*trials start at random"):
        T.tune(space, data=shapes, overrides=["model.init_from=none"], tuner="grid", max_epochs=1,
               out=tmp_path / "r", tensorboard=False, progress=False)
    assert not (tmp_path / "r").exists()
