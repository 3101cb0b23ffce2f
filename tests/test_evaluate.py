"""Tests for maskclf.reports.evaluate (pure metric functions)."""

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from maskclf.reports.evaluate import choose_threshold, compute_metrics, format_summary, write_metrics
from maskclf.files import MaskclfError

NAMES2 = ["with_mask", "without_mask"]
# 4 positives (class 0), 6 negatives; p_positive is column 0.
Y2 = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
P_POS = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.1, 0.05])
P2 = np.stack([P_POS, 1 - P_POS], axis=1)


def _has_nan(obj):
    if isinstance(obj, float):
        return math.isnan(obj)
    if isinstance(obj, dict):
        return any(_has_nan(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_nan(v) for v in obj)
    return False


def test_binary_hand_computed():
    m = compute_metrics(Y2, P2, NAMES2)
    # At 0.5: TP=3 FN=1 FP=1 TN=5.
    assert m["confusion_matrix"] == [[3, 1], [1, 5]]
    assert m["positive_class"] == "with_mask" and m["threshold"] == 0.5
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["recall"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(5 / 6)
    assert m["npv"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert m["roc_auc"] == pytest.approx(21 / 24)
    assert m["per_class"]["without_mask"]["recall"] == pytest.approx(5 / 6)
    assert m["per_class"]["with_mask"]["support"] == 4
    assert m["confusion_matrix_normalized"][1] == pytest.approx([1 / 6, 5 / 6])
    json.dumps(m, allow_nan=False)


def test_threshold_changes_all_binary_metrics():
    m = compute_metrics(Y2, P2, NAMES2, threshold=0.25)
    # At 0.25: TP=4 FN=0 FP=2 TN=4.
    assert m["confusion_matrix"] == [[4, 0], [2, 4]]
    assert m["recall"] == pytest.approx(1.0)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["per_class"]["with_mask"]["recall"] == pytest.approx(1.0)
    assert m["roc_auc"] == pytest.approx(21 / 24)  # threshold-free


def test_positive_index_one():
    m = compute_metrics(Y2, P2, NAMES2, positive_index=1)
    assert m["positive_class"] == "without_mask"
    # p_without = 1 - P_POS >= 0.5: negatives-of-mask predicted as without_mask.
    assert m["recall"] == pytest.approx(5 / 6)
    assert m["specificity"] == pytest.approx(0.75)


def test_multiclass_recall_and_balanced_accuracy():
    y = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0, 2])
    probs = np.full((6, 3), 0.1)
    probs[np.arange(6), pred] = 0.8
    m = compute_metrics(y, probs, ["with_mask", "without_mask", "mask_weared_incorrect"])
    assert m["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    recalls = [m["per_class"][n]["recall"] for n in m["class_names"]]
    assert recalls == pytest.approx([0.5, 2 / 3, 1.0])
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(y, probs / probs.sum(1, keepdims=True), multi_class="ovr"))
    assert "specificity" not in m


def test_zero_division_gives_zero_not_nan():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(y, probs, ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix_normalized"][2] == [0.0, 0.0, 0.0]
    assert m["roc_auc_ovr"] is None
    assert m["balanced_accuracy"] == pytest.approx(1.0)
    assert not _has_nan(m)
    json.dumps(m, allow_nan=False)


def test_binary_single_class_auc_is_none():
    y = np.zeros(3, dtype=int)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(y, probs, NAMES2)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["specificity"] == 0.0 and m["npv"] == 0.0
    json.dumps(m, allow_nan=False)


@pytest.mark.parametrize(
    "y, probs, names",
    [
        ([0, 1, 0], [[0.5, 0.5], [0.5, 0.5]], NAMES2),  # length mismatch
        ([0, 1], [0.5, 0.5], NAMES2),  # probs 1-D
        ([0, 1], [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], NAMES2),  # C != len(names)
        ([0, 2], [[0.5, 0.5], [0.5, 0.5]], NAMES2),  # label out of range
        ([0, -1], [[0.5, 0.5], [0.5, 0.5]], NAMES2),  # negative label
        ([0, 1], [[np.nan, 0.5], [0.5, 0.5]], NAMES2),  # NaN probability
        ([], np.zeros((0, 2)), NAMES2),  # empty
    ],
)
def test_bad_input_raises(y, probs, names):
    with pytest.raises(MaskclfError) as exc:
        compute_metrics(y, probs, names)
    assert "\n" not in str(exc.value)


def test_choose_threshold_separates():
    pos = np.array([0.2, 0.25, 0.3, 0.35])
    neg = np.array([0.0, 0.05, 0.1, 0.15])
    p_pos = np.concatenate([pos, neg])
    y = np.array([0] * 4 + [1] * 4)
    probs = np.stack([p_pos, 1 - p_pos], axis=1)
    t = choose_threshold(y, probs)
    assert 0.15 < t <= 0.2
    assert compute_metrics(y, probs, NAMES2)["balanced_accuracy"] == pytest.approx(0.5)
    assert compute_metrics(y, probs, NAMES2, threshold=t)["balanced_accuracy"] == pytest.approx(1.0)


def test_choose_threshold_ties_and_single_class():
    # Everything in (0.3, 0.8] separates: 0.5 is a candidate and the closest to 0.5.
    p_pos = np.array([0.8, 0.9, 0.1, 0.3])
    probs = np.stack([p_pos, 1 - p_pos], axis=1)
    assert choose_threshold([0, 0, 1, 1], probs) == 0.5
    assert choose_threshold([1, 1, 1, 1], probs) == 0.5
    with pytest.raises(MaskclfError):
        choose_threshold([0, 1, 2], np.full((3, 3), 1 / 3))


def test_write_metrics_round_trip(tmp_path):
    m = compute_metrics(Y2, P2, NAMES2)
    out = write_metrics(m, tmp_path / "metrics.json")
    assert out == tmp_path / "metrics.json"
    with open(out, encoding="utf-8") as fh:
        assert json.load(fh) == m
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_format_summary():
    text = format_summary(compute_metrics(Y2, P2, NAMES2))
    assert "0.8000" in text  # accuracy
    assert "with_mask" in text and "without_mask" in text
    assert "specificity 0.8333" in text and "NPV" in text and "ROC-AUC 0.8750" in text
    multi = format_summary(compute_metrics([0, 1, 2], np.eye(3), ["a", "b", "c"]))
    assert "specificity" not in multi and "OvR" in multi


def test_no_tensorflow_import():
    code = (
        "import sys, maskclf.reports.evaluate, maskclf.reports.plots; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_predicted_classes_and_mistakes_follow_the_threshold():
    from maskclf.reports.evaluate import most_confident_mistakes, predicted_classes

    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.35, 0.65]])
    assert predicted_classes(probs).tolist() == [0, 1, 1, 1]
    assert predicted_classes(probs, threshold=0.3).tolist() == [0, 0, 1, 0]  # p(class 0) >= 0.3
    y = np.array([1, 1, 1, 1])
    idx, pred = most_confident_mistakes(y, probs, threshold=0.3)
    assert pred.tolist() == [0, 0, 1, 0]
    assert idx.tolist() == [0, 1, 3]  # wrong calls, most confident first (0.9, 0.4, 0.35)
    three = np.array([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1]])
    assert predicted_classes(three, threshold=0.9).tolist() == [1, 0]  # threshold only for two classes


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    from maskclf.reports.evaluate import expected_calibration_error
    # 10 samples called at 0.8 confidence, 8 right: perfectly calibrated.
    probs = np.array([[0.8, 0.2]] * 10)
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(y, probs) == pytest.approx(0.0, abs=1e-9)
    # Called at 0.99 but right half the time: ECE = 0.49.
    probs = np.array([[0.99, 0.01]] * 10)
    y = np.array([0] * 5 + [1] * 5)
    assert expected_calibration_error(y, probs) == pytest.approx(0.49)
    assert compute_metrics(y, probs, ["a", "b"])["ece"] == pytest.approx(0.49)


def test_short_class_names_fit_plot_titles():
    from maskclf.reports.evaluate import short_class_names

    assert short_class_names(["mask_weared_incorrect", "with_mask", "without_mask"]) == [
        "incorrect", "with_mask", "without_mask"]
    # Same last word for two classes, or no shorter word: the first 12 characters.
    assert short_class_names(["left_hand_side", "right_hand_side"]) == ["left_hand_si", "right_hand_s"]
    assert short_class_names(["x" * 20]) == ["x" * 12]
