"""The IoU tracker: ids across frames, smoothed labels, expiry; and process_video with tracking on and off."""

import json
from dataclasses import replace

import numpy as np
import pytest

from maskclf.edge.classifier import Face
from maskclf.edge.tracking import IouTracker, count_flips, match
from maskclf.files import MaskclfError

NAMES = ["with_mask", "without_mask"]


def _face(box, p_mask):
    k = 0 if p_mask >= 0.5 else 1
    probs = {"with_mask": p_mask, "without_mask": 1.0 - p_mask}
    return Face(tuple(float(v) for v in box), NAMES[k], probs[NAMES[k]], probs, 0.9)


def _shift(box, dx, dy=0):
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


# ----------------------------------------------------------------------------- the tracker alone

def test_match_is_greedy_on_iou_and_ignores_small_overlaps():
    prev = [(0, 0, 10, 10), (20, 0, 30, 10)]
    cur = [(21, 0, 31, 10), (1, 0, 11, 10), (100, 100, 110, 110)]
    assert sorted(match(prev, cur)) == [(0, 1), (1, 0)]
    assert match([(0, 0, 10, 10)], [(8, 0, 18, 10)]) == []  # IoU 0.11: not the same face
    # Greedy: the best overlap (0.82) takes its box first; what is left of the other pairs is under 0.3.
    assert match([(0, 0, 10, 10), (3, 0, 13, 10)], [(2, 0, 12, 10), (6, 0, 16, 10)]) == [(1, 0)]


def test_match_equals_pairwise_greedy_matching_on_random_crowds():
    from maskclf.edge.detector import iou

    def reference(prev, cur, threshold=0.3):
        pairs = sorted(((iou(a, b), i, j) for i, a in enumerate(prev) for j, b in enumerate(cur)
                        if iou(a, b) >= threshold), key=lambda p: -p[0])
        used_i, used_j, out = set(), set(), []
        for _, i, j in pairs:
            if i not in used_i and j not in used_j:
                used_i.add(i), used_j.add(j), out.append((i, j))
        return out

    rng = np.random.default_rng(0)
    for n, m in ((30, 28), (5, 0), (0, 4), (12, 12)):
        xy = rng.integers(0, 300, (n + m, 2)).astype(float)
        wh = rng.integers(1, 60, (n + m, 2)).astype(float)
        boxes = [tuple(p) + tuple(p + s) for p, s in zip(xy, wh)]
        prev, cur = boxes[:n], [(b[0] + 3, b[1], b[2] + 3, b[3]) for b in boxes[:min(n, m)]] + boxes[n + min(n, m):]
        assert match(prev, cur) == reference(prev, cur)
    dup = [(0, 0, 10, 10), (0, 0, 10, 10)]
    assert match(dup, dup) == reference(dup, dup) == [(0, 0), (1, 1)]  # ties: the earlier boxes first


def test_ids_follow_moving_faces_and_a_new_face_gets_a_new_id():
    tracker = IouTracker(NAMES)
    a, b = (10, 10, 60, 60), (200, 40, 260, 100)
    ids = []
    for i in range(10):  # both faces move 4 px a frame, listed in a changing order
        faces = [_face(_shift(a, 4 * i, i), 0.9), _face(_shift(b, -4 * i), 0.2)]
        out = tracker.update(faces[::-1] if i % 2 else faces)
        ids.append({f.box[0] < 150: tid for f, tid in out})
    assert all(d == ids[0] for d in ids) and len(set(ids[0].values())) == 2
    out = tracker.update([_face(_shift(a, 40, 10), 0.9), _face((400, 300, 450, 350), 0.9)])
    assert out[0][1] == ids[0][True]
    assert out[1][1] not in ids[0].values() and out[1][1] == max(ids[0].values()) + 1


def test_a_one_frame_flicker_does_not_flip_the_smoothed_label_but_a_lasting_change_does():
    tracker = IouTracker(NAMES, decide=lambda p: (int(np.argmax(p)), float(np.max(p))))
    box = (50, 50, 100, 100)
    p_mask = [0.9] * 5 + [0.1] + [0.9] * 5 + [0.1] * 6
    labels, raw = [], []
    for i, p in enumerate(p_mask):
        face = _face(_shift(box, 2 * i), p)
        (smoothed, _), = tracker.update([face])
        labels.append(smoothed.label)
        raw.append(face.label)
        assert smoothed.box == face.box and smoothed.detector_score == face.detector_score
        assert smoothed.score == pytest.approx(smoothed.probs[smoothed.label])
        assert sum(smoothed.probs.values()) == pytest.approx(1.0)
    assert raw[5] == "without_mask" and labels[5] == "with_mask"  # the flicker is smoothed away
    assert labels[:11] == ["with_mask"] * 11
    assert labels[-1] == "without_mask"  # a lasting change comes through within a few frames
    assert labels.index("without_mask") <= 11 + 3


def test_the_decision_rule_is_the_classifiers():
    # A two-class run's threshold (here 0.8 for with_mask) decides, not argmax.
    tracker = IouTracker(NAMES, decide=lambda p: (0, float(p[0])) if p[0] >= 0.8 else (1, float(p[1])))
    (f, _), = tracker.update([_face((0, 0, 50, 50), 0.7)])
    assert f.label == "without_mask" and f.score == pytest.approx(0.3)


def test_tracks_expire_after_missed_frames():
    tracker = IouTracker(NAMES, max_missed=2)
    box = (10, 10, 60, 60)
    (_, first), = tracker.update([_face(box, 0.9)])
    tracker.update([])
    tracker.update([])
    (_, again), = tracker.update([_face(box, 0.9)])  # missed 2 frames: still the same track
    assert again == first
    for _ in range(3):
        tracker.update([])
    assert tracker.tracks == []
    (_, later), = tracker.update([_face(box, 0.1)])
    assert later != first
    assert tracker.update([_face(box, 0.1)])[0][0].label == "without_mask"  # no memory of the old track's 0.9


def test_tracker_options_are_checked():
    for kw in ({"iou_threshold": 0}, {"max_missed": -1}, {"alpha": 0}, {"alpha": 1.5}, {"classify_every": 0},
               {"classify_every": 1.5}):
        with pytest.raises(MaskclfError):
            IouTracker(NAMES, **kw)


class _Scripted:
    """Classifies boxes with P(with_mask) from ``p(call number)``; records the boxes of each call; drops a box
    whose x1 is negative (as FaceClassifier drops a box with no pixels in the frame)."""

    def __init__(self, p=lambda k: 0.85):
        self.p, self.calls = p, []

    def __call__(self, boxes):
        k = len(self.calls)
        self.calls.append([tuple(b[:4]) for b in boxes])
        return [replace(_face(b[:4], self.p(k)), detector_score=b[4]) for b in boxes if b[0] >= 0]


def _crowd(frame):
    """Three faces drifting right 2 px a frame from frame 0; a fourth from frame 4; the first gone after 7."""
    boxes = [(10 + 2 * frame, 10, 60 + 2 * frame, 60, 0.9), (110 + 2 * frame, 10, 160 + 2 * frame, 60, 0.8),
             (210 + 2 * frame, 10, 260 + 2 * frame, 60, 0.7)]
    if frame >= 4:
        boxes.append((10, 200, 60, 250, 0.6))
    return boxes[1:] if frame > 7 else boxes


def test_step_with_classify_every_1_is_update_of_every_face():
    a, b = IouTracker(NAMES), IouTracker(NAMES)
    ca, cb = _Scripted(lambda k: 0.2 if k % 3 == 2 else 0.85), _Scripted(lambda k: 0.2 if k % 3 == 2 else 0.85)
    for frame in range(12):
        boxes = _crowd(frame)
        got = a.step(boxes, ca)
        want = b.update(cb(boxes))
        assert [(f.box, f.label, f.probs, f.detector_score, i) for f, i in got] == \
            [(f.box, f.label, f.probs, f.detector_score, i) for f, i in want]
    assert ca.calls == cb.calls


def test_step_classifies_new_faces_at_once_and_each_tracked_face_every_n_frames():
    n = 3
    tracker, clf = IouTracker(NAMES, classify_every=n), _Scripted(lambda k: 0.9 - 0.05 * k)
    seen_probs: dict = {}
    turns: dict = {}  # track id -> frames it was classified on
    for frame in range(14):
        boxes = _crowd(frame)
        before = len(clf.calls)
        out = tracker.step(boxes, clf)
        sent = clf.calls[-1] if len(clf.calls) > before else []
        assert len(clf.calls) - before <= 1  # one batched call per frame at most
        assert [f.box for f, _ in out] == [tuple(float(v) for v in b[:4]) for b in boxes]  # boxes follow YuNet
        assert [f.detector_score for f, _ in out] == [b[4] for b in boxes]
        for f, i in out:
            if f.box in sent:
                turns.setdefault(i, []).append(frame)
            elif i in seen_probs:
                assert f.probs == seen_probs[i]  # between turns the track's decision stands unchanged
            seen_probs[i] = f.probs
    first = {i: t[0] for i, t in turns.items()}
    assert sorted(turns) == [1, 2, 3, 4] and first == {1: 0, 2: 0, 3: 0, 4: 4}  # new faces at once
    for i, t in turns.items():
        assert all(b - a == n for a, b in zip(t[1:], t[2:])), (i, t)  # then every n frames
        assert t[1] - t[0] <= n
    # Staggered: the three faces that came together are not re-classified all on one frame.
    later = [f for i in (1, 2, 3) for f in turns[i][1:]]
    assert len(later) == len(set(later))
    assert sum(len(c) for c in clf.calls) < 0.5 * sum(len(_crowd(f)) for f in range(14))


def test_step_gives_no_face_for_a_box_the_classifier_drops():
    tracker, clf = IouTracker(NAMES, classify_every=2), _Scripted()
    assert [i for _, i in tracker.step([(-5, 0, 40, 40, 0.9), (100, 0, 140, 40, 0.9)], clf)] == [1]
    assert len(tracker.tracks) == 1


def test_count_flips_counts_label_changes_of_the_same_face():
    box = (0, 0, 10, 10)
    frames = [[(box, "a"), ((50, 50, 60, 60), "a")], [(box, "b"), ((50, 50, 60, 60), "a")], [(box, "b")],
              [((100, 0, 110, 10), "a")]]
    assert count_flips(frames) == (3, 1)


# ----------------------------------------------------------------------------- process_video

cv2 = pytest.importorskip("cv2")


class _FixedDetector:
    """Two faces that drift a few px a frame (a stand-in for YuNet on a panning camera)."""

    name = "fixed"

    def __init__(self):
        self.frame = 0

    def detect(self, rgb):
        i, self.frame = self.frame, self.frame + 1
        return [(20 + 2 * i, 30, 90 + 2 * i, 100, 0.9), (180 - 2 * i, 40, 260 - 2 * i, 120, 0.8)]


class _FlickeringClassifier:
    """FaceClassifier's interface; faces are masked, but every third frame the network says the opposite."""

    class_names = NAMES
    threshold = None

    def __init__(self):
        self.frame = 0

    def decide(self, probs):
        k = int(np.argmax(probs))
        return k, float(probs[k])

    def classify(self, image, boxes, bgr=False):
        i, self.frame = self.frame, self.frame + 1
        p = 0.2 if i % 3 == 2 else 0.85
        return [_face(b[:4], p) for b in boxes]

    def describe(self):
        return {"file": "flicker"}


def _video(path, frames=12):
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    assert w.isOpened()
    base = rng.integers(0, 255, (240, 320 + 4 * frames, 3), dtype=np.uint8)
    for i in range(frames):
        w.write(np.ascontiguousarray(base[:, 2 * i:2 * i + 320]))
    w.release()
    return path


def _flips(doc_frames):
    return count_flips([[(f["box"], f["label"]) for f in e["faces"]] for e in doc_frames])


def test_process_video_gives_track_ids_and_fewer_flips_with_tracking(tmp_path):
    from maskclf.edge.app import FaceMaskPipeline, process_video

    video = _video(tmp_path / "clip.mp4")
    docs = {}
    for track in (False, True):
        pipe = FaceMaskPipeline(_FlickeringClassifier(), _FixedDetector())
        docs[track] = process_video(pipe, video, tmp_path / f"out-{track}.mp4", progress=False, track=track)
    on, off = docs[True]["frames"], docs[False]["frames"]
    assert len(on) == len(off) == 12
    assert all("track" not in f for e in off for f in e["faces"])
    ids = [[f["track"] for f in e["faces"]] for e in on]
    assert all(x == ids[0] for x in ids) and len(set(ids[0])) == 2  # the same two faces throughout
    assert all("track" in e["timings_ms"] for e in on)
    pairs_on, flips_on = _flips(on)
    pairs_off, flips_off = _flips(off)
    assert pairs_on == pairs_off == 22
    assert flips_off == 14 and flips_on == 0
    assert docs[True]["stats"]["per_label"] == {"with_mask": 24, "without_mask": 0}


def test_stream_detects_the_next_frame_while_this_one_is_classified():
    """overlap=True: frame t+1's detection runs on a worker thread during frame t's classification (the
    classifier of frame 0 waits for it, so a sequential stream would time out); results keep frame order and
    equal the one-thread stream's; an error of the frame source reaches the caller after the good frames."""
    import threading

    from maskclf.edge.app import FaceMaskPipeline
    from maskclf.files import MaskclfError

    started = {}

    class Detector(_FixedDetector):
        def detect(self, rgb):
            started[int(rgb[0, 0, 0])] = threading.current_thread().name
            return super().detect(rgb)

    class Waiting(_FlickeringClassifier):
        def classify(self, image, boxes, bgr=False):
            k = int(image[0, 0, 0])
            if self.overlap and k + 1 < 5:
                for _ in range(500):  # up to 5 s for the worker to start on the next frame
                    if k + 1 in started:
                        break
                    threading.Event().wait(0.01)
                assert k + 1 in started, f"frame {k + 1} was not being detected while frame {k} was classified"
            return super().classify(image, boxes, bgr)

    frames = [np.full((240, 320, 3), k, np.uint8) for k in range(5)]
    out = {}
    for overlap in (True, False):
        started.clear()
        clf = Waiting()
        clf.overlap = overlap
        pipe = FaceMaskPipeline(clf, Detector())
        got = list(pipe.stream(iter(frames), bgr=False, overlap=overlap))
        assert [int(f[0, 0, 0]) for f, _ in got] == list(range(5))
        out[overlap] = [[(face.box, face.label) for face in r.faces] for _, r in got]
        assert all(set(r.timings_ms) == {"detect", "classify"} for _, r in got)
        names = set(started.values())
        assert (threading.main_thread().name in names) is (not overlap)  # the worker detects every frame
    assert out[True] == out[False]

    def broken():
        yield frames[0]
        yield frames[1]
        raise MaskclfError("clip.mp4: no frame could be read")

    pipe = FaceMaskPipeline(_FlickeringClassifier(), _FixedDetector())
    seen = []
    with pytest.raises(MaskclfError, match="clip.mp4"):
        for frame, _ in pipe.stream(broken()):
            seen.append(frame)
    assert len(seen) == 2


def test_process_video_gives_the_same_frames_with_and_without_overlap(tmp_path):
    from maskclf.edge.app import FaceMaskPipeline, process_video

    video = _video(tmp_path / "clip.mp4")
    docs = {}
    for overlap in (True, False):
        pipe = FaceMaskPipeline(_FlickeringClassifier(), _FixedDetector())
        docs[overlap] = process_video(pipe, video, tmp_path / f"out-{overlap}.mp4", progress=False, overlap=overlap,
                                      max_frames=9)
    strip = [[(f["box"], f["label"], f["track"]) for f in e["faces"]] for e in docs[True]["frames"]]
    assert len(strip) == 9
    assert strip == [[(f["box"], f["label"], f["track"]) for f in e["faces"]] for e in docs[False]["frames"]]
    assert docs[True]["stats"] == docs[False]["stats"] | {"mean_ms": docs[True]["stats"]["mean_ms"]}
    assert (tmp_path / "out-True.mp4").stat().st_size > 0


def test_process_video_classifies_a_tracked_face_every_n_frames(tmp_path):
    from maskclf.edge.app import FaceMaskPipeline, process_video

    class Counting(_FlickeringClassifier):
        boxes = 0

        def classify(self, image, boxes, bgr=False):
            Counting.boxes += len(boxes)
            return super().classify(image, boxes, bgr)

    video = _video(tmp_path / "clip.mp4")
    docs, sent = {}, {}
    for every in (1, 3):
        Counting.boxes = 0
        pipe = FaceMaskPipeline(Counting(), _FixedDetector())
        docs[every] = process_video(pipe, video, None, progress=False, classify_every=every)["frames"]
        sent[every] = Counting.boxes
    strip = {e: [[(f["box"], f["track"]) for f in fr["faces"]] for fr in d] for e, d in docs.items()}
    assert strip[1] == strip[3] and len(strip[3]) == 12 and all(len(x) == 2 for x in strip[3])
    assert sent[1] == 24 and sent[3] <= 2 + 2 * 11 // 3 + 2  # each face on its first frame, then every 3rd
    assert all({"classify", "track"} <= set(fr["timings_ms"]) for fr in docs[3])
    pipe = FaceMaskPipeline(Counting(), _FixedDetector())
    with pytest.raises(MaskclfError, match="needs the tracker"):
        process_video(pipe, video, None, progress=False, track=False, classify_every=2)
    with pytest.raises(MaskclfError, match="--classify-every must be a whole number"):
        process_video(pipe, video, None, progress=False, classify_every=0)


def test_detect_cli_tracks_videos_unless_no_track(tmp_path, monkeypatch, capsys):
    """`maskclf detect VIDEO` puts track ids in the JSON; --no-track leaves them out (a real video file)."""
    from maskclf.cli import main
    from maskclf.edge import app

    monkeypatch.setattr(app, "FaceClassifier", lambda *a, **k: _FlickeringClassifier())
    monkeypatch.setattr(app, "create_detector", lambda *a, **k: _FixedDetector())
    video = _video(tmp_path / "clip.mp4", frames=6)
    for flag, key in (([], True), (["--no-track"], False)):
        js = tmp_path / f"{key}.json"
        assert main(["detect", str(video), "--model", "unused", "--json", str(js), "--no-save", "--quiet", *flag]) == 0
        doc = json.loads(js.read_text())
        assert len(doc["inputs"]) == 6
        assert all(("track" in f) is key for e in doc["inputs"] for f in e["faces"])
    capsys.readouterr()
    js = tmp_path / "every.json"
    assert main(["detect", str(video), "--model", "unused", "--json", str(js), "--no-save", "--quiet",
                 "--classify-every", "3"]) == 0
    assert len(json.loads(js.read_text())["inputs"]) == 6
    assert main(["detect", str(video), "--model", "unused", "--no-save", "--classify-every", "2", "--no-track"]) != 0
    err = capsys.readouterr().err
    assert "--classify-every needs the tracker" in err and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------------------- a real export and YuNet

@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A tiny int8 export trained on the VOC sample, as tests/test_edge.py builds it (accuracy is not the point)."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("ai_edge_litert")
    from conftest import SAMPLE

    from maskclf.export import convert as E
    from maskclf.config import Config, apply_overrides
    from maskclf.training.train import train

    tiny = ["model.name=small_cnn", "model.filters=[8,16]", "model.convs_per_block=1", "model.dense_units=[16]",
            "image_size=32", "batch_size=32", "patience=50", "learning_rate=0.01", "lr_schedule=constant", "epochs=2"]
    root = tmp_path_factory.mktemp("tracking-run")
    cfg = apply_overrides(Config(), [f"data.path={SAMPLE}", f"train.out={root / 'runs'}", *tiny])
    keras.utils.set_random_seed(0)
    run = train(cfg, progress=False)
    return E.export_run(run, precisions="int8", representative=16, force=True, threads=(1,), max_test=16,
                        latency_runs=1, progress=False)


def test_run_detect_on_a_real_video_keeps_track_ids_and_flips_no_more(export_dir, tmp_path):
    from conftest import make_video

    from maskclf.edge.app import run_detect

    video = make_video(tmp_path / "clip.mp4", frames=10)  # a sample photo with two frontal faces, panning
    docs = {t: run_detect(str(video), export_dir, save=False, progress=False, track=t) for t in (False, True)}
    on, off = docs[True]["inputs"], docs[False]["inputs"]
    assert len(on) == len(off) == 10
    assert [[f["box"] for f in e["faces"]] for e in on] == [[f["box"] for f in e["faces"]] for e in off]
    assert all("track" not in f for e in off for f in e["faces"])
    ids = [sorted(f["track"] for f in e["faces"]) for e in on]
    assert sum(len(x) for x in ids) >= 10 and all(isinstance(i, int) for x in ids for i in x)
    # The panned faces keep their ids: far fewer ids than faces.
    assert len({i for x in ids for i in x}) <= max(len(x) for x in ids) + 1
    pairs_on, flips_on = _flips(on)
    pairs_off, flips_off = _flips(off)
    assert pairs_on == pairs_off >= 9 and flips_on <= flips_off
