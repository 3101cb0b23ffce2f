import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

from conftest import make_class_folders
from PIL import Image

from maskclf.reports import report as R
from maskclf.config import Config, apply_overrides

TINY = ["model.filters=[8,16]", "model.convs_per_block=1", "model.dense_units=[16]", "image_size=32",
        "batch_size=16", "val_fraction=0.2", "test_fraction=0.3", "patience=50", "learning_rate=0.003"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from maskclf.training import train as T

    tmp = tmp_path_factory.mktemp("report")
    data = make_class_folders(tmp / "shapes", ("circle", "square"), 20)
    (data / "circle" / "notes.txt").write_text("not an image")  # a problem the report must list
    cfg = apply_overrides(Config(), [f"data.path={data}", f"train.out={tmp / 'runs'}", *TINY, "epochs=2"])
    return T.train(cfg, progress=False)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tags, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _decode(src: str, base: Path) -> Image.Image:
    if src.startswith("data:image/png;base64,"):
        import base64
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
    else:
        raw = (base / src).read_bytes()
    im = Image.open(io.BytesIO(raw))
    im.load()
    return im


def test_report_is_self_contained_and_complete(run_dir):
    out = R.build_report(run_dir)
    assert out == run_dir / "report.html"
    page = out.read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(page)
    parser.close()
    assert parser.tags.count("table") >= 3 and "h2" in parser.tags
    assert len(parser.imgs) == 4  # learning curves, confusion matrix, ROC, Grad-CAM grid
    for src in parser.imgs:
        assert src.startswith("data:image/png;base64,")  # inlined: the file can be mailed alone
        im = _decode(src, run_dir)
        assert im.width > 100 and im.height > 100
    text = " ".join(parser.text)
    for needle in ("circle", "square", "train", "validation", "test", "balanced_accuracy", "not an image",
                   "Grad-CAM", "model:"):
        assert needle in text, needle
    # Markdown: every referenced PNG exists beside it and decodes.
    md = (run_dir / "report.md").read_text()
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert R.ERRORS_PNG in refs and len(refs) == 4
    for ref in refs:
        _decode(ref, run_dir)
    assert "| circle |" in md


def test_worst_errors_and_counts(run_dir):
    from maskclf.data.splitting import read_split_csv

    rows = read_split_csv(run_dir / "split.csv")
    table = R.split_counts(rows, ["circle", "square"])
    assert table[-1][0] == "total" and table[-1][4] == len(rows)
    assert sum(r[3] for r in table[:-1]) == sum(r["split"] == "test" for r in rows)
    e = R.worst_errors(run_dir, n=3)
    assert 0 < len(e["paths"]) <= 3 and e["kind"] in ("errors", "least confident")
    if e["kind"] == "errors":
        assert all(t != p for t, p in zip(e["true"], e["pred"]))
        assert e["score"] == sorted(e["score"], reverse=True)


def test_report_of_a_non_run_is_a_one_line_error(tmp_path):
    from maskclf.files import MaskclfError

    with pytest.raises(MaskclfError, match="run directory"):
        R.build_report(tmp_path / "nope")
    with pytest.raises(MaskclfError, match="config.yaml"):
        R.build_report(tmp_path)


def test_cli_explain_and_report(run_dir, tmp_path, capsys):
    from maskclf.cli import main
    from maskclf.data.splitting import read_split_csv

    img = next(r["path"] for r in read_split_csv(run_dir / "split.csv") if r["split"] == "test")
    assert main(["explain", str(run_dir), img, "--out", str(tmp_path / "x"), "--class", "square"]) == 0
    (panel,) = (tmp_path / "x").glob("*.png")
    with Image.open(panel) as im:
        assert im.width > 2.5 * im.height
    assert "square" in capsys.readouterr().out
    assert main(["explain", str(run_dir), img, "--class", "dog"]) == 2
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    html_path = R.build_report(run_dir)
    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           html_path.resolve().as_uri()]
    subprocess.run(cmd, check=False, capture_output=True, timeout=120)  # the screenshot is the verdict
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as im:
        assert im.size == (1200, 2000)
        colours = im.convert("RGB").resize((120, 200)).getcolors(maxcolors=100000)
    assert colours is not None and len(colours) > 50  # text and figures, not a blank page
