"""The deployment kit in export/: set-up script, systemd camera service, --events JSON lines."""

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert")
keras = pytest.importorskip("keras")

from conftest import REPO, SAMPLE, make_video  # noqa: E402

from maskclf.export import convert as E  # noqa: E402
from maskclf.cli import main  # noqa: E402
from maskclf.config import Config, apply_overrides  # noqa: E402
from maskclf.training.train import train  # noqa: E402

SETUP = REPO / "export" / "setup_pi.sh"
UNIT = REPO / "export" / "maskclf-camera.service"
TINY = ["model.filters=[8,16]", "model.convs_per_block=1", "model.dense_units=[16]", "image_size=32",
        "batch_size=32", "patience=50", "learning_rate=0.01", "lr_schedule=constant", "epochs=1"]
FRONTAL = "maksssksksss148.jpg"  # two large unmasked frontal faces


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A tiny float32 + int8 export trained on the VOC sample (accuracy is not the point: forced)."""
    root = tmp_path_factory.mktemp("deploy-run")
    cfg = apply_overrides(Config(), [f"data.path={SAMPLE}", f"train.out={root / 'runs'}", *TINY])
    keras.utils.set_random_seed(0)
    run = train(cfg, progress=False)
    return E.export_run(run, precisions="float32,int8", representative=16, force=True, threads=(1,),
                        max_test=16, latency_runs=1, progress=False)


def _video(path: Path, frames: int = 8) -> Path:
    return make_video(path, frames, FRONTAL)


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read_string(UNIT.read_text())
    return cp


def _service_argv(unit, maskclf_cmd, video, export, events, max_frames=5):
    """The unit's ExecStart with the camera swapped for a video file and the paths for test ones."""
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert Path(argv[0]).name == "maskclf" and argv[1] == "detect"
    i = argv.index("--camera")
    argv[i:i + 2] = [str(video)]
    argv[argv.index("--model") + 1] = str(export)
    argv[argv.index("--events") + 1] = str(events)
    return [*maskclf_cmd, *argv[1:], "--max-frames", str(max_frames)]


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_events(records, n, source):
    assert [r["frame"] for r in records] == list(range(n))
    for r in records:
        assert r["source"] == source and r["time"].endswith("+00:00")
        assert r["num_faces"] == len(r["faces"]) >= 1
        for f in r["faces"]:
            assert len(f["box"]) == 4 and f["label"] in ("mask_weared_incorrect", "with_mask", "without_mask")
            assert 0.0 <= f["score"] <= 1.0
        assert r["timings_ms"]["total"] > 0


# ----------------------------------------------------------------------------- the script

def test_setup_script_is_valid_bash_and_has_help():
    assert os.access(SETUP, os.X_OK)
    subprocess.run(["bash", "-n", str(SETUP)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(SETUP)], check=True)
    out = subprocess.run(["bash", str(SETUP), "--help"], capture_output=True, text=True, check=True).stdout
    assert "Usage: export/setup_pi.sh [SOURCE] [VENV]" in out
    bad = subprocess.run(["bash", str(SETUP), "/no/such/checkout", "/tmp/unused-venv"], capture_output=True, text=True)
    assert bad.returncode != 0 and "checkout folder or a maskclf-*.whl" in bad.stderr


def test_setup_script_installs_the_runtime_into_a_fresh_venv_without_tensorflow(export_dir, tmp_path):
    """~15 s here: pip gets numpy, pillow, opencv-python-headless and ai-edge-litert (cache or index)."""
    src = tmp_path / "src"  # a clean copy: pip builds in-tree (build/, *.egg-info) and must not touch the repo
    src.mkdir()
    shutil.copytree(REPO / "maskclf", src / "maskclf",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHON"] = sys.executable
    r = subprocess.run(["bash", str(SETUP), str(src), str(venv)], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "no TensorFlow" in r.stdout and "Next steps" in r.stdout
    vpy = venv / "bin" / "python"
    # A fresh venv: nothing of the test environment leaks in, and TensorFlow/Keras are not importable.
    probe = ("import importlib.util, sys, maskclf; "
             "print(sys.prefix); print(maskclf.__file__); "
             "print([m for m in ('tensorflow', 'keras', 'sklearn') if importlib.util.find_spec(m)])")
    prefix, where, heavy = subprocess.run([str(vpy), "-c", probe], capture_output=True, text=True, env=env,
                                          check=True, cwd=tmp_path).stdout.splitlines()
    assert Path(prefix) == venv and Path(where).is_relative_to(venv) and heavy == "[]"
    # The installed command on a sample photo, with the tiny export.
    js = tmp_path / "photo.json"
    r = subprocess.run([str(venv / "bin" / "maskclf"), "detect", str(SAMPLE / "images" / FRONTAL), "--model",
                        str(export_dir), "--json", str(js), "--out", str(tmp_path / "annotated"), "--quiet"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(js.read_text())
    assert doc["summary"]["faces"] >= 1 and (tmp_path / "annotated" / FRONTAL).is_file()
    # The service's command line works in that venv too (video instead of camera).
    events = tmp_path / "venv-events.jsonl"
    argv = _service_argv(_unit(), [str(venv / "bin" / "maskclf")], _video(tmp_path / "cam.mp4"), export_dir,
                         events, max_frames=3)
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_events(events)) == 3
    # An existing venv is not overwritten.
    again = subprocess.run(["bash", str(SETUP), str(src), str(venv)], capture_output=True, text=True, env=env)
    assert again.returncode != 0 and "already exists" in again.stderr


# ----------------------------------------------------------------------------- the systemd unit

def test_systemd_unit_is_well_formed():
    unit = _unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    s = unit["Service"]
    assert s["User"] == "maskclf" and s["User"] != "root" and s["Restart"] in ("always", "on-failure")
    assert s["WorkingDirectory"] == "/var/lib/maskclf" and s["StateDirectory"] == "maskclf"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(s["ExecStart"])
    assert Path(argv[0]).is_absolute()  # systemd needs an absolute program path
    for flag in ("--camera", "--model", "--events", "--no-save"):
        assert flag in argv
    assert argv[argv.index("--events") + 1].startswith(s["WorkingDirectory"])
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
        assert "Unknown key" not in r.stderr and "Unknown section" not in r.stderr, r.stderr


def test_service_command_on_a_video_writes_one_event_per_frame(export_dir, tmp_path):
    video = _video(tmp_path / "cam.mp4")
    events = tmp_path / "var" / "events.jsonl"
    argv = _service_argv(_unit(), [sys.executable, "-m", "maskclf.cli"], video, export_dir, events)
    r = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "5 frames" in r.stdout and f"events: {events}" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.mp4", "var"]  # --no-save: no annotated video
    _check_events(_events(events), 5, str(video))
    # A restart appends (the service never truncates its log).
    subprocess.run(argv[:-1] + ["2"], capture_output=True, text=True, cwd=tmp_path, check=True, timeout=300)
    records = _events(events)
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4, 0, 1]


def test_events_with_json_keeps_frames_and_without_keeps_none(export_dir, tmp_path, capsys):
    from maskclf.edge.app import run_detect

    video = _video(tmp_path / "clip.mp4", frames=4)
    ev1, js = tmp_path / "a.jsonl", tmp_path / "a.json"
    assert main(["detect", str(video), "--model", str(export_dir), "--events", str(ev1), "--json", str(js),
                 "--no-save", "--quiet"]) == 0
    doc = json.loads(js.read_text())
    records = _events(ev1)
    assert len(doc["inputs"]) == len(records) == 4
    assert [e["faces"] for e in doc["inputs"]] == [r["faces"] for r in records]
    # Without --json nothing per frame is kept (a camera runs for days), but the summary still counts.
    ev2 = tmp_path / "b.jsonl"
    doc2 = run_detect(str(video), export_dir, events=ev2, save=False, progress=False)
    assert doc2["inputs"] == [] and doc2["summary"]["inputs"] == 4
    assert doc2["summary"]["faces"] == doc["summary"]["faces"] == sum(r["num_faces"] for r in _events(ev2))
    assert doc2["summary"]["per_label"] == doc["summary"]["per_label"]
    assert doc2["videos"][0]["num_frames"] == 4
    capsys.readouterr()


@pytest.mark.parametrize("argv, words", [
    (["detect", str(SAMPLE / "images" / FRONTAL), "--model", "EXPORT", "--events", "e.jsonl"], "--events is for"),
    (["detect", "VIDEO", "--model", "EXPORT", "--events", "/proc/no/e.jsonl"], "cannot append"),
])
def test_events_errors(export_dir, tmp_path, capsys, argv, words):
    video = _video(tmp_path / "v.mp4", frames=2)
    argv = [str(export_dir) if a == "EXPORT" else str(video) if a == "VIDEO" else a for a in argv]
    assert main(argv) != 0
    assert words in capsys.readouterr().err
