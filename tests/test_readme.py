"""Every command in README.md runs here, so README cannot drift from the CLI.

README.md is parsed at collection time: every command of its ```bash blocks (trailing `# comments` stripped,
`\\` continuations joined, `A && B` / `A; B` / `A & B` split, `NAME=value` assignments expanded as `$NAME`)
and every ```python block becomes one test case, whose id is the command as README writes it. A case runs the
command for real (``maskclf ...`` in-process through :func:`maskclf.cli.main`, from a scratch workspace folder
that plays the user's current directory, so `runs/`, `annotated/` ... land there) after the substitution table
below, and checks something the command is documented to write. A README command that no rule covers (a new
subcommand, an unknown path, a new shell form) FAILS, naming the command: add a rule here when adding one there.

Identical commands after substitution run once per module (the set-up `maskclf train --data data/sample` and
`maskclf train --data ../shared/data/face-mask-detection` are one training, which is also the `runs/RUN` below).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

pytest.importorskip("keras")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert")

from conftest import FRONTAL_PHOTO, REPO, SAMPLE, make_video  # noqa: E402

from maskclf.cli import build_parser, main  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

README = REPO / "README.md"

# ============================================================================ the substitution table
# README path (exact token, or a prefix followed by "/") -> the workspace asset that replaces it (Workspace.<name>).
PATHS = {
    "../shared/data/face-mask-detection": "sample",       # the 853-photo VOC set -> data/sample (125 photos)
    "DATA": "sample",                                     # any dataset -> data/sample
    "data/sample": "sample",                              # (absolute: commands run from the workspace)
    "../shared/data/chandrikadeb7-face-mask": "two_class",  # with_mask/, without_mask/: 20 mirrored sample crops each
    "runs/RUN": "run",                                    # a copy of the module's trained + exported run
    "photos/": "photos",                                  # 2 sample photos
    "faces/": "faces",                                    # 3 face crops of the sample
    "face1.jpg": "face1",                                 # 1 face crop
    "street.mp4": "video",                                # 8 frames made from a sample photo (cv2.VideoWriter)
}
# Other relative paths: a file of the repo (tuning/small_cnn.yaml) -> made absolute; these are outputs, written
# into the workspace as the command says; anything else fails the case.
OUTPUTS = ("runs/", "annotated/", "faces.json", "events.jsonl")
# A workspace input another README command writes (so a case also runs alone, e.g. with -k): that command first.
PRODUCERS = {"runs/tune-small_cnn": "maskclf tune tuning/small_cnn.yaml"}
# Flag values -> tiny ones; flags added when missing (the defaults train 40 epochs, tune 20 per trial).
FLAG_VALUES = {"--epochs": "1", "--max-epochs": "1", "--max-trials": "2", "--folds": "2", "--ensemble": "2"}
ADDED_FLAGS = {"train": {"--epochs": "1"}, "cv": {"--epochs": "1"}, "compare": {"--epochs": "1"},
               "tune": {"--max-epochs": "1", "--max-trials": "2"}}
# `--model M` (train, cv) also gets model.weights=none: no internet for ImageNet weights (efficientnet_lite0's
# come from a package: the default ensemble and `--ensemble-models` keep them, with train.fine_tune_epochs=0, but 1
# in the set-up command: its phase runs there, and only there).
# export: every precision's --min-agreement at most these (README's own thresholds capped: a 1-epoch model has
# near-ties that flip under quantisation: 1-2 in 72 for the CNN, int8 0.972 < README's 0.98 once; 4 in 72 for the
# default ensemble, whose lite0 member has had one frozen epoch, int8 0.944; the default thresholds and the refusal
# are tested in test_export.py on a confidently trained run).
EXPORT_AGREEMENT = {"float16": "0.9", "dynamic": "0.9", "int8": "0.9"}
# README commands (by how they start) run only with `-m slow`: over the ~3 min budget of this file on 2 busy cores.
SLOW = {"maskclf train --data DATA --model vgg19": "VGG19 (20M parameters) at 64 px: 35-50 s for one epoch",
        # three families, mobilenet_v3_small alone ~38 s; compare itself runs in test_experiments.py (two small CNNs)
        "maskclf compare": "trains maskclf_cnn, seed004_cnn and mobilenet_v3_small: ~60 s on 2 busy cores"}
# Not run, checked instead: `--camera N` (parses, and a camera that cannot be opened gives the documented one-line
# error), background `A & B` lines (only `maskclf tune --distributed`: parse; run by test_tune.py), `pip install`
# (the extras exist in pyproject.toml), `python -m pytest` (this suite: its config), `wait` (a shell builtin).


# ============================================================================ parsing README
@dataclass
class Case:
    text: str                      # the command as README writes it (comment stripped)
    line: int                      # README line number
    argv: list[str] = field(default_factory=list)
    background: bool = False       # followed by `&`
    python: str | None = None      # a ```python block's code
    error: str | None = None       # README could not be read into a command


def _scan(line: str, stop) -> int:
    """Index of the first unquoted position where ``stop(line, i)`` holds, else len(line)."""
    quote = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif stop(line, i):
            return i
        i += 1
    return len(line)


def _strip_comment(line: str) -> str:
    return line[:_scan(line, lambda s, i: s[i] == "#" and (i == 0 or s[i - 1].isspace()))].rstrip()


def _split_operators(line: str) -> list[tuple[str, str | None]]:
    """``A && B & C`` -> [("A", "&&"), ("B", "&"), ("C", None)]."""
    out = []
    while line.strip():
        i = _scan(line, lambda s, j: s[j] in "&|;")
        op = line[i:i + 2] if line[i:i + 2] in ("&&", "||") else (line[i] if i < len(line) else None)
        out.append((line[:i].strip(), op))
        line = line[i + len(op or ""):]
    return out


def _expand(tokens: list[str], env: dict[str, str]) -> list[str]:
    out = []
    for t in tokens:
        m = re.fullmatch(r"\$(\w+)|\$\{(\w+)\}", t)
        if m:  # an unquoted expansion is split into words, as bash does
            name = m.group(1) or m.group(2)
            if name not in env:
                raise ValueError(f"${name} is not set in the README snippet")
            out += shlex.split(env[name])
        elif "$" in t:
            raise ValueError(f"{t!r}: only whole-word $NAME expansions are supported")
        else:
            out.append(t)
    return out


def _bash_cases(lines: list[str], first: int) -> list[Case]:
    cases, env, joined = [], {}, []
    for n, raw in enumerate(lines, first):
        joined.append(raw)
        if raw.endswith("\\"):
            continue
        text = " ".join(s.rstrip("\\").strip() for s in joined)
        start, joined = n - len(joined) + 1, []
        text = _strip_comment(text)
        segments = _split_operators(text)
        pipes = [op for _, op in segments if op in ("||", "|")]
        if pipes:
            cases.append(Case(text, start, error=f"no rule for the shell operator {pipes[0]!r}"))
            continue
        for segment, op in segments:
            try:
                tokens = shlex.split(segment)
                if tokens and all(re.match(r"[A-Za-z_]\w*=", t) for t in tokens):  # O=...; T="..."
                    for t in tokens:  # the value's own $NAMEs expand now, as in bash
                        name, value = t.split("=", 1)
                        env[name] = re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: env[m.group(1) or m.group(2)], value)
                    continue
                if tokens == ["wait"]:  # the shell builtin after background jobs
                    continue
                cases.append(Case(segment, start, _expand(tokens, env), background=op == "&"))
            except ValueError as e:
                cases.append(Case(segment, start, error=str(e)))
    return cases


def readme_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of every fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*```(\S*)\s*$", line)
        if m and lang is None:
            lang, start, body = m.group(1), n + 1, []
        elif m:
            blocks.append((lang, start, body))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def readme_cases(text: str | None) -> list[Case]:
    if text is None:
        return [Case("README.md", 0, error="README.md cannot be read")]
    blocks = readme_blocks(text)
    cases = []
    for lang, start, body in blocks:
        if lang in ("bash", "sh", "shell"):
            cases += _bash_cases(body, start)
        elif lang == "python":
            code = "\n".join(body)
            cases.append(Case("python: " + "; ".join(_strip_comment(s) for s in body if s.strip()), start,
                              python=code))
    return cases


README_TEXT = README.read_text(encoding="utf-8") if README.is_file() else None  # one snapshot for the module
CASES = readme_cases(README_TEXT)


# ============================================================================ the workspace
@contextlib.contextmanager
def _chdir(path: Path):  # contextlib.chdir is Python 3.11+
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@dataclass
class Result:
    argv: list[str]
    rc: int
    out: str
    err: str
    cwd: Path

    def line(self, prefix: str) -> str:
        found = [s[len(prefix):].strip() for s in self.out.splitlines() if s.startswith(prefix)]
        assert found, f"no {prefix!r} line in the output of maskclf {shlex.join(self.argv)}:\n{self.out[-2000:]}"
        return found[-1]

    def path(self, prefix: str) -> Path:
        """The path a ``prefix`` line names (relative ones are relative to the workspace)."""
        return self.cwd / self.line(prefix)


class Workspace:
    """The folder README commands run from, its input assets (made on first use) and a memo of commands run."""

    def __init__(self, root: Path):
        self.root = root
        self.inputs = root / "inputs"
        self.inputs.mkdir(parents=True)
        self.memo: dict[tuple, Result] = {}
        self._pristine: Path | None = None
        self._copies = 0

    def main(self, argv: list[str]) -> Result:
        key = tuple(argv)
        if key not in self.memo:
            out, err = io.StringIO(), io.StringIO()
            with _chdir(self.root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(list(argv))
            self.memo[key] = Result(list(argv), rc, out.getvalue(), err.getvalue(), self.root)
        return self.memo[key]

    # --- assets named by PATHS
    def sample(self) -> Path:
        return SAMPLE

    def pristine_run(self) -> Path:
        """The set-up command's run (default model, 1 epoch on data/sample) plus a small float32 + int8 export."""
        if self._pristine is None:
            res = self.main(substitute(["maskclf", "train", "--data", "data/sample"], self, {})[0])
            assert res.rc == 0, res.err[-3000:]
            run = res.path("run directory:")
            from maskclf.export.convert import export_run

            export_run(run, precisions="float32,int8", representative=16, max_test=16, latency_runs=1,
                       threads=(1,), force=True, progress=False)
            self._pristine = run
        return self._pristine

    def run(self) -> Path:
        """A fresh copy per command (several write into the run); outside runs/ so no training resumes it."""
        self._copies += 1
        return Path(shutil.copytree(self.pristine_run(), self.root / "copies" / f"RUN-{self._copies}"))

    def _crops(self, labels=None, split="test") -> list[tuple[str, str]]:
        """(path, label) of the pristine run's crops of one split."""
        with open(self.pristine_run() / "split.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == split]
        return [(r["path"], r["label"]) for r in rows if labels is None or r["label"] in labels]

    def two_class(self) -> Path:
        """A second source: class folders of mirrored training crops (mirrored: not duplicates of the sample's)."""
        from PIL import Image, ImageOps

        root = self.inputs / "chandrikadeb7-face-mask"  # the name evaluate --data puts in metrics-<name>.json
        if not root.is_dir():
            for label in ("with_mask", "without_mask"):
                (root / label).mkdir(parents=True)
                for k, (path, _) in enumerate(self._crops({label}, "train")[:20]):
                    ImageOps.mirror(Image.open(path).convert("RGB")).save(root / label / f"{label}{k}.png")
        return root

    def faces(self) -> Path:
        root = self.inputs / "faces"
        if not root.is_dir():
            root.mkdir()
            for k, (path, _) in enumerate(self._crops()[:3]):
                shutil.copy(path, root / f"face{k}{Path(path).suffix}")
        return root

    def face1(self) -> Path:
        from PIL import Image

        path = self.inputs / "face1.jpg"
        if not path.is_file():
            Image.open(self._crops()[0][0]).convert("RGB").save(path)
        return path

    def photos(self) -> Path:
        root = self.inputs / "photos"
        if not root.is_dir():
            root.mkdir()
            for name in (FRONTAL_PHOTO, "maksssksksss0.jpg"):
                shutil.copy(SAMPLE / "images" / name, root)
        return root

    def video(self) -> Path:
        path = self.inputs / "street.mp4"
        return path if path.is_file() else make_video(path, 8)


def _is_pathlike(token: str) -> bool:
    return "/" in token or bool(re.search(r"\.[A-Za-z]\w*$", token)) or bool(re.fullmatch(r"[A-Z][A-Z_]+", token))


def substitute(argv: list[str], ws: Workspace, used: dict) -> tuple[list[str], dict]:
    """README argv (``maskclf ...``) -> the argv to run, by the table above; ``used`` gets the assets used."""
    assert argv[0] == "maskclf"
    command = command_name(argv)
    out = []
    for i, t in enumerate(argv[1:]):
        prev = argv[i]  # the token before t
        if prev in FLAG_VALUES:
            out.append(FLAG_VALUES[prev])
        elif t.startswith("-") or re.match(r"[\w.]+=", t) or not _is_pathlike(t):
            out.append(t)  # flags, key=value overrides, names and numbers
        else:
            out.append(str(_path(t, ws, used, is_output=prev in ("--out", "--json", "--events"))))
    for flag, value in ADDED_FLAGS.get(command, {}).items():
        if flag not in out:
            out += [flag, value]
    if command in ("train", "cv") and "--model" in out:
        _add_override(out, "model.weights=none")
    if command in ("train", "cv") and _default_ensemble(out) is not None:  # lite0's recipe fine-tunes 8 more epochs:
        setup = argv[1:3] == ["train", "--data"] and len(argv) == 4  # one in the set-up, as users first run it
        _add_override(out, f"train.fine_tune_epochs={1 if setup else 0}")  # (check_train sees it), none elsewhere
    if command == "cv":  # one fold (or held-out source) of two: cv's loop over folds is test_experiments.py's
        if "--by-source" in out and "--source" not in out:
            out += ["--source", Path(out[out.index("--data") + 1]).name]  # trains on the small two-class set
        elif "--by-source" not in out and "--fold" not in out:
            out += ["--fold", "1"]
    if command == "export":  # one --min-agreement: README's thresholds capped at EXPORT_AGREEMENT, the rest set to it
        named = {}
        while "--min-agreement" in out:
            i = out.index("--min-agreement")
            named |= dict(v.split("=", 1) for v in out[i + 1].split(","))
            del out[i:i + 2]
        cap = {p: str(min(float(named.get(p, v)), float(v))) for p, v in EXPORT_AGREEMENT.items()}
        out += ["--min-agreement", ",".join(f"{p}={v}" for p, v in (named | cap).items())]
    return out, used


def _add_override(argv: list[str], kv: str) -> None:
    """Add ``key=value`` beside the command's other overrides: argparse takes one run of them, not two runs split
    by a flag (README's `... model.filters=[24] ...` then the added `--epochs 1`)."""
    at = [i for i, t in enumerate(argv) if re.match(r"[\w.]+=", t) and (i == 0 or not argv[i - 1].startswith("-"))]
    argv.insert(at[-1] + 1 if at else len(argv), kv)


def _default_ensemble(argv: list[str]) -> list[str] | None:
    """The member families a train/cv command trains (``--ensemble-models``, or the default ensemble when no
    --model, --config or --ensemble chooses one network); None for one network."""
    from maskclf.models.registry import DEFAULT_ENSEMBLE

    if "--ensemble-models" in argv:
        return argv[argv.index("--ensemble-models") + 1].split(",")
    if any(f in argv for f in ("--model", "--config", "--ensemble")):
        return None
    return list(DEFAULT_ENSEMBLE)


class Uncovered(Exception):
    pass


def _path(token: str, ws: Workspace, used: dict, is_output: bool):
    for readme, asset in PATHS.items():
        if token == readme or token.startswith(readme.rstrip("/") + "/"):
            if asset not in used:
                used[asset] = getattr(ws, asset)()
            value = used[asset]
            return Path(value, token[len(readme):].lstrip("/")) if token != readme else value
    if token.startswith(OUTPUTS):
        if not is_output and not (ws.root / token).exists():
            for prefix, command in PRODUCERS.items():
                if token.startswith(prefix + "/"):
                    run_producer(command, ws)
            if not (ws.root / token).exists():
                raise Uncovered(f"{token} does not exist and no README command in PRODUCERS writes it")
        return token  # relative to the workspace, the commands' working directory
    if (REPO / token).exists():
        return REPO / token
    raise Uncovered(f"no substitution rule for {token!r}")


def run_producer(prefix: str, ws: Workspace) -> None:
    for c in CASES:
        if c.text.startswith(prefix) and not c.background and not c.error:
            res = ws.main(substitute(c.argv, ws, {})[0])
            assert res.rc == 0, f"{c.text} (needed first) failed:\n{res.err[-3000:]}"
            return
    raise Uncovered(f"no README command starts with {prefix!r} (PRODUCERS)")


def command_name(argv: list[str]) -> str:
    words = [a for a in argv[1:3] if not a.startswith("-")]
    return " ".join(words[:2]) if words[:1] == ["data"] else (words[0] if words else "")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("readme-workspace"))


# ============================================================================ what each command must write
def _config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def _find(tree, key):
    """Every value of ``key`` anywhere in a nested dict."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key:
                yield v
            yield from _find(v, key)


RUN_FILES = ["config.yaml", "labels.txt", "split.csv", "data_report.txt", "history.csv", "best.keras", "metrics.json",
             "history.png", "confusion_matrix.png", "roc.png", "errors.png", "tensorboard"]  # README "### Train"


def check_train(res: Result, ws, used):
    run = res.path("run directory:")
    argv = res.argv
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["balanced_accuracy"] <= 1
    members = [run]
    if "--ensemble" in argv:  # N members and their average as one more run directory
        members = [res.cwd / m for m in metrics["ensemble_of"]]
        assert len(members) == int(argv[argv.index("--ensemble") + 1]) and run not in members
        assert all((run / name).exists() for name in ("best.keras", "labels.txt", "config.yaml", "split.csv"))
    names = _default_ensemble(argv)
    if names:  # one member per family (the default ensemble without --model), each with its own recipe
        from maskclf.models.registry import get_spec

        members = [res.cwd / m for m in metrics["ensemble_of"]]
        configs = [_config(m) for m in members]
        assert [c["model"]["name"] for c in configs] == names and run not in members
        specs = [get_spec(n) for n in names]
        sizes = [s.image_size for s in specs]  # each family at its own size, fed the largest
        assert [c["data"]["image_size"] for c in configs] == sizes and _config(run)["data"]["image_size"] == max(sizes)
        for s, c, m in zip(specs, configs, members):  # a pretrained family keeps ImageNet (a package ships lite0's)
            assert c["model"]["weights"] == ("imagenet" if s.backbone else None), (s.name, c["model"])
            with open(m / "history.csv", newline="") as f:  # and its fine-tuning phase ran (the set-up: one epoch)
                rows = len(list(csv.DictReader(f)))
            assert rows == c["train"]["epochs"] + (c["train"]["fine_tune_epochs"] if c["model"]["weights"] else 0)
    for member in members:
        for name in RUN_FILES:
            assert (member / name).exists(), f"{member} has no {name}"
    cfg = _config(run)
    sources = [Path(argv[i + 1]).name for i, a in enumerate(argv) if a == "--data"]
    if len(sources) > 1:  # metrics.json adds a per_source table
        assert set(metrics["per_source"]) == set(sources), metrics["per_source"]
    if "--model" in argv:
        assert cfg["model"]["name"] == argv[argv.index("--model") + 1]
    if "--image-size" in argv:
        assert cfg["data"]["image_size"] == int(argv[argv.index("--image-size") + 1])
    if "--config" in argv:
        given = yaml.safe_load(Path(ws.root, argv[argv.index("--config") + 1]).read_text())
        assert cfg["model"] == {**cfg["model"], **{k: v for k, v in given["model"].items() if k != "weights"}}
    labels = (run / "labels.txt").read_text().split()
    for o in (a for a in argv if re.match(r"[\w.]+=", a) and a != "model.weights=none"):
        key, value = o.split("=", 1)
        value = yaml.safe_load(value)
        assert value in list(_find(cfg, key.split(".")[-1])), f"{o} is not in {run}/config.yaml"
        if key.endswith("class_map"):
            dropped = [c for c, to in value.items() if to is None]
            assert not set(dropped) & set(labels) and len(labels) == 3 - len(dropped), labels


def check_data_inspect(res, ws, used):
    paths = [a for a in res.argv[2:] if not a.startswith("-") and "=" not in a]
    assert "problems:" in res.out, res.out[-2000:]
    if len(paths) == 1:
        assert "layout:  voc" in res.out, res.out[-2000:]
    else:  # one table over all, then per source
        per_source = res.out.split("per source:")[1]
        assert all(Path(p).name in per_source for p in paths), res.out[-2000:]


def check_config(res, ws, used):
    cfg = yaml.safe_load(res.out)
    assert {"data", "augment", "model", "train"} <= set(cfg)


def check_models(res, ws, used):
    named = set()  # every model a README command names is in the registry listing
    for c in CASES:
        for flag in ("--model", "--models"):
            if flag in c.argv and command_name(c.argv) in ("train", "cv", "compare"):
                named |= set(c.argv[c.argv.index(flag) + 1].split(","))
    listed = {line.split()[0] for line in res.out.splitlines() if line and not line[0].isspace()}
    assert named and named <= listed, f"{sorted(named - listed)} not in `maskclf models`"
    if "-v" in res.argv:
        assert "options:" in res.out


def check_evaluate(res, ws, used):
    run = used["run"]
    data = res.argv[res.argv.index("--data") + 1] if "--data" in res.argv else None
    name = f"metrics-{Path(data).name}.json" if data else "metrics.json"
    metrics = json.loads((run / name).read_text())
    assert 0 <= metrics["balanced_accuracy"] <= 1 and "balanced accuracy" in res.out
    if data:  # every image of the folder, classes matched by name
        folders = {d.name: len(list(d.iterdir())) for d in Path(data).iterdir()}
        assert metrics["num_samples"] == sum(folders.values())
        assert {c: m["support"] for c, m in metrics["per_class"].items() if m["support"]} == folders


def check_predict(res, ws, used):
    images = [p for p in res.argv[2:] if not p.startswith("-")]
    expected = sum(len(list(Path(p).iterdir())) if Path(p).is_dir() else 1 for p in images)
    results = json.loads(res.out)
    assert len(results) == expected and all("label" in r and abs(sum(r["probabilities"].values()) - 1) < 1e-4
                                            for r in results), results


def check_explain(res, ws, used):
    panels = list((used["run"] / "explain").glob("*.png"))
    assert len(panels) == len(list(used["faces"].iterdir())), panels


def check_report(res, ws, used):
    html = (used["run"] / "report.html").read_text()
    assert "<html" in html.lower() and (used["run"] / "report.md").is_file()


def check_tune(res, ws, used):
    out = res.path("search folder:")
    for name in ("best.yaml", "trials.csv", "objective.png"):
        assert (out / name).is_file(), f"{out} has no {name}"
    from maskclf.config import load_config

    load_config(out / "best.yaml")  # a complete training config


def check_compare(res, ws, used):
    out = res.path("comparison folder:")
    with open(out / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    models = res.argv[res.argv.index("--models") + 1].split(",")
    assert [r["model"] for r in rows] == models
    assert (out / "compare.md").is_file() and (out / "compare.png").is_file()


def check_cv(res, ws, used):
    out = res.path("cross-validation folder:")
    cv = json.loads((out / "cv.json").read_text())
    assert (out / "cv.md").is_file()
    names = _default_ensemble(res.argv)
    if names:  # the default ensemble: its members, averaged fold by fold
        assert [m.rsplit("-", 1)[0] for m in cv["members"]] == names, cv.get("members")
    if "--by-source" in res.argv:  # one held-out row per source (--source: that one)
        sources = [res.argv[i + 1] for i, a in enumerate(res.argv) if a == "--data"]
        assert cv["by_source"] and len(cv["sources"]) == len(sources), cv["sources"]
        held = [res.argv[res.argv.index("--source") + 1]] if "--source" in res.argv else cv["sources"]
        assert [r["held_out"] for r in cv["per_source"]] == held, cv["per_source"]
        from maskclf.files import members_of

        for r in cv["per_source"]:  # the default ensemble's members averaged per held-out source
            assert len(members_of(Path(res.cwd, r["run_dir"]))) == len(names or []) and "recall" in r
            assert r["test_images"] > 0 and set(r["recall"]) <= set(r["class_names"])
        if names:  # cv.md's title names them
            assert f"Leave-one-source-out: {'+'.join(names)}" in (out / "cv.md").read_text()
    else:
        assert cv["folds"] == int(res.argv[res.argv.index("--folds") + 1])
        assert cv["folds_done"] == (1 if "--fold" in res.argv else cv["folds"])
        assert (out / "cv.png").is_file()


def check_calibrate(res, ws, used):
    run = used["run"]
    assert (run / "calibration.json").is_file() and (run / "uncalibrated.keras").is_file()
    assert "temperature" in res.out


def check_export(res, ws, used):
    export = used["run"] / "export"
    quantize = res.argv[res.argv.index("--quantize") + 1] if "--quantize" in res.argv else "float32,float16,dynamic,int8"
    models = sorted(p.name for p in export.glob("*.tflite"))
    assert models == sorted(f"model_{p}.tflite" for p in quantize.split(",")), models
    for name in ("labels.txt", "metadata.json", "report.md", "report.json"):
        assert (export / name).is_file(), name


def check_detect(res, ws, used):
    if "photos" in used:
        photos = sorted(p.name for p in used["photos"].iterdir())
        annotated = Path(ws.root, res.argv[res.argv.index("--out") + 1])
        assert sorted(p.name for p in annotated.iterdir() if p.name in photos) == photos
        doc = json.loads(Path(ws.root, res.argv[res.argv.index("--json") + 1]).read_text())
        assert sorted(Path(e["path"]).name for e in doc["inputs"]) == photos
        assert all(isinstance(e["faces"], list) for e in doc["inputs"]) and any(e["faces"] for e in doc["inputs"])
    else:  # a video: one annotated video with every frame
        video = res.path("annotated output:")
        cap = cv2.VideoCapture(str(video))
        assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8, video
        cap.release()


def check_evaluate_detection(res, ws, used):
    # Written into the run the export names (metadata source_run: the module's run, not this copy), as README says.
    outputs = [Path(ws.root, p.strip()) for p in res.line("written:").split(",")]
    assert [p.name for p in outputs] == ["detection_eval_test.json", "detection_eval_test.md"]
    report = json.loads(outputs[0].read_text())
    assert 0 <= report["map"] <= 1 and outputs[1].is_file()


CHECKS = {
    "data inspect": check_data_inspect, "train": check_train, "config": check_config, "models": check_models,
    "evaluate": check_evaluate, "predict": check_predict, "explain": check_explain, "report": check_report,
    "tune": check_tune, "compare": check_compare, "cv": check_cv, "calibrate": check_calibrate,
    "export": check_export, "detect": check_detect, "evaluate-detection": check_evaluate_detection,
}
# What a command writes into runs/RUN: removed from the copy first, so the check sees the command's own files.
RUN_OUTPUTS = {"evaluate": ["metrics.json"], "export": ["export"], "report": ["report.html", "report.md"],
               "explain": ["explain"], "calibrate": ["calibration.json"]}


# ============================================================================ the cases
def run_maskclf(case: Case, ws: Workspace, monkeypatch) -> None:
    command = command_name(case.argv)
    if command not in CHECKS:
        raise Uncovered(f"`maskclf {command}` has no check in CHECKS")
    used: dict = {}
    argv, used = substitute(case.argv, ws, used)
    if case.background:
        return check_distributed(case, argv)
    if "--camera" in argv:
        return check_camera(argv, ws, monkeypatch)
    if "run" in used and "--data" not in argv:
        for name in RUN_OUTPUTS.get(command, []):
            p = used["run"] / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    res = ws.main(argv)
    assert res.rc == 0, f"maskclf {shlex.join(argv)} exited {res.rc}:\n{res.err[-3000:]}"
    CHECKS[command](res, ws, used)


def check_distributed(case: Case, argv: list[str]) -> None:
    """Background jobs: only KerasTuner's chief/worker tune. Parsed here; a chief and two workers really search
    in tests/test_tune.py::test_distributed_search_chief_and_two_workers (subprocesses on a free port)."""
    from maskclf.tuning.tune import distributed_env

    args = build_parser().parse_args(argv)
    if args.command != "tune" or not args.distributed:
        raise Uncovered("only `maskclf tune --distributed ...` may run in the background (`&`)")
    assert Path(args.space).is_file() and (args.tuner_id is None) == (args.distributed == "chief")
    distributed_env(args.distributed, args.oracle, args.tuner_id)  # the HOST:PORT and tuner-id checks


class _NoCamera:
    def isOpened(self):
        return False

    def release(self):
        pass


def check_camera(argv: list[str], ws: Workspace, monkeypatch) -> None:
    """No camera here (and a real one would run until Ctrl-C): parse, then run with the camera unplugged."""
    args = build_parser().parse_args(argv)
    assert args.command == "detect" and isinstance(args.camera, int) and args.input is None
    real = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda src, *a: _NoCamera() if isinstance(src, int) else real(src, *a))
    res = ws.main(argv)
    errors = [s for s in res.err.splitlines() if s.startswith("maskclf: error:")]
    assert res.rc == 2 and len(errors) == 1 and "Traceback" not in res.err, res.err[-2000:]
    assert f"camera {args.camera} cannot be opened" in errors[0] and "--camera" in errors[0], errors


def check_pip(case: Case) -> None:
    """`pip install -e ".[a,b]"`: the extras exist (pip is not run)."""
    targets = [a for a in case.argv[2:] if not a.startswith("-")]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for t in targets:
        m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", t)
        if not m:
            raise Uncovered(f"pip target {t!r}: only this repository (.[extras]) has a rule")
        missing = [e for e in (m.group(1) or "").split(",") if e and e not in extras]
        assert not missing, f"extras {missing} are not in pyproject.toml (have {sorted(extras)})"
    assert targets


def check_pytest(case: Case) -> None:
    """`python -m pytest` is this suite (not re-run from inside itself): its configuration holds."""
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert Path(__file__).parent.name in ini["testpaths"]
    if "-n" in ini.get("addopts", ""):
        pytest.importorskip("xdist")
    assert case.text in (REPO / ".ci" / "run").read_text(), "README says .ci/run runs this command"


def run_python(case: Case, ws: Workspace) -> None:
    code = case.python
    for readme, asset in PATHS.items():
        if "/" in readme:
            code = code.replace(f'"{readme}"', repr(str(getattr(ws, asset)()))).replace(
                f"'{readme}'", repr(str(getattr(ws, asset)())))
    if "../" in code:
        raise Uncovered("a path in the python block has no substitution rule")
    namespace: dict = {}
    with _chdir(ws.root):
        exec(compile(code, f"README.md:{case.line}", "exec"), namespace)
    ds = namespace.get("ds")
    assert ds is not None, "the TFDS block defines ds"
    (example,) = ds.take(1)  # image, objects{bbox, label} as README's comment says
    assert example["image"].shape[-1] == 3
    boxes, labels = example["objects"]["bbox"], example["objects"]["label"]
    assert boxes.shape[-1] == 4 and boxes.shape[0] == labels.shape[0]


def run_case(case: Case, ws: Workspace, monkeypatch) -> None:
    try:
        if case.error:
            raise Uncovered(case.error)
        if case.python is not None:
            run_python(case, ws)
        elif case.argv[:1] == ["maskclf"]:
            run_maskclf(case, ws, monkeypatch)
        elif case.argv[:2] == ["pip", "install"] and not case.background:
            check_pip(case)
        elif case.argv[:3] == ["python", "-m", "pytest"] and not case.background:
            check_pytest(case)
        else:
            raise Uncovered("no rule for this kind of command")
    except Uncovered as e:
        pytest.fail(f"README.md line {case.line}: `{case.text}` is not covered by tests/test_readme.py: {e}; "
                    "add a rule to its substitution table (or CHECKS)", pytrace=False)


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.text, marks=[pytest.mark.slow] if c.text.startswith(tuple(SLOW)) else []) for c in CASES])
def test_readme_command(case, ws, monkeypatch):
    run_case(case, ws, monkeypatch)


@pytest.mark.parametrize("line, words", [
    ("maskclf synth runs/RUN --per-class 3 --out synth/", "`maskclf synth` has no check"),
    ("maskclf train --data ../shared/data/another-set", "no substitution rule for '../shared/data/another-set'"),
    ("maskclf train --data ROOT", "no substitution rule for 'ROOT'"),
    ("docker run maskclf", "no rule for this kind of command"),
    ("maskclf train --data DATA & maskclf train --data DATA", "only `maskclf tune --distributed"),
    ("maskclf models | head", "no rule for the shell operator '|'"),
    ("pip install maskclf", "only this repository"),
])
def test_a_readme_command_without_a_rule_fails_naming_it(line, words, ws, monkeypatch):
    (case, *_) = _bash_cases([line], 7)
    with pytest.raises(pytest.fail.Exception) as e:
        run_case(case, ws, monkeypatch)
    assert f"README.md line 7: `{case.text}` is not covered" in str(e.value) and words in str(e.value)


def test_readme_parsing_finds_every_block():
    """Each ```bash block gives at least one command, and the known shapes parse as bash would."""
    assert README_TEXT is not None
    for lang, start, body in readme_blocks(README_TEXT):
        if lang == "bash":
            assert [c for c in CASES if start <= c.line < start + len(body)], f"no command in the block at {start}"
    assert any(c.python for c in CASES)
    cases = _bash_cases(['A=1; B="x --y $A"  # set', "$B --z \\", "  w & $B --q & wait", "# only a comment",
                         "pip install -e \".[a,b]\" && maskclf train a='{b: null}'   # c"], 1)
    assert [(c.argv, c.background, c.line) for c in cases] == [
        (["x", "--y", "1", "--z", "w"], True, 2), (["x", "--y", "1", "--q"], True, 2),
        (["pip", "install", "-e", ".[a,b]"], False, 5), (["maskclf", "train", "a={b: null}"], False, 5)]
