"""The vectorized WIDER FACE evaluation against an independent loop implementation, the public port and MATLAB curves."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from safefakes.data.ground_truth import GroundTruth, GroundTruthImage, load_ground_truth
from safefakes.data.predictions import ImagePredictions
from safefakes.data.wider import DIFFICULTIES
from safefakes.evaluate.wider_eval import EvaluationConfig, evaluate, normalize_scores, voc_ap

# ----------------------------------------------------------------------------------------------
# An independent, deliberately plain implementation of the protocol: one image, one detection,
# one threshold at a time, as WIDER_EVAL_PROTOCOL.md describes it (no numpy vector tricks).
# ----------------------------------------------------------------------------------------------


def _loop_iou(pred: list[float], gt: list[float]) -> float:
    """IoU of two ``x y w h`` boxes with corners ``x + w`` and the +1 pixel rule."""
    px1, py1, px2, py2 = pred[0], pred[1], pred[0] + pred[2], pred[1] + pred[3]
    gx1, gy1, gx2, gy2 = gt[0], gt[1], gt[0] + gt[2], gt[1] + gt[3]
    iw = min(px2, gx2) - max(px1, gx1) + 1
    ih = min(py2, gy2) - max(py1, gy1) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    union = (px2 - px1 + 1) * (py2 - py1 + 1) + (gx2 - gx1 + 1) * (gy2 - gy1 + 1) - iw * ih
    return iw * ih / union


def _loop_ap(recall: list[float], precision: list[float]) -> float:
    """VOC all-point AP with a MATLAB-style max that skips NaN."""
    mrec = [0.0] + list(recall) + [1.0]
    mpre = [0.0] + list(precision) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        if math.isnan(mpre[i]) or (not math.isnan(mpre[i + 1]) and mpre[i + 1] > mpre[i]):
            mpre[i] = mpre[i + 1]
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def loop_reference(ground_truth: GroundTruth, predictions: dict, num_thresholds: int = 1000) -> dict[str, float]:
    """The protocol with plain Python loops; returns the three APs."""
    scores = [s for image in ground_truth.images for s in predictions.get(image.key, ImagePredictions.empty()).scores.tolist()]
    low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)
    aps = {}
    for setting in DIFFICULTIES:
        proposals = [0] * num_thresholds
        hits = [0] * num_thresholds
        n_faces = 0
        for image in ground_truth.images:
            counted = image.counted[setting].tolist()
            n_faces += sum(counted)
            preds = predictions.get(image.key, ImagePredictions.empty())
            gt = image.boxes.tolist()
            if not gt or len(preds) == 0:
                continue
            items = [(preds.scores[i], preds.boxes[i].tolist()) for i in range(len(preds))]
            items.sort(key=lambda item: -item[0])  # Python's sort is stable, like MATLAB's
            norm = [1.0 if high == low else (s - low) / (high - low) for s, _ in items]
            state = [0] * len(gt)  # 0 untouched, 1 recalled, -1 ignored-hit
            is_proposal, recalled_so_far = [], []
            for _, box in items:
                overlaps = [_loop_iou(box, g) for g in gt]
                best = max(range(len(gt)), key=lambda k: (overlaps[k], -k))
                keep = True
                if overlaps[best] >= 0.5:
                    if not counted[best]:
                        state[best] = -1
                        keep = False
                    elif state[best] == 0:
                        state[best] = 1
                is_proposal.append(keep)
                recalled_so_far.append(sum(1 for v in state if v == 1))
            for t in range(num_thresholds):
                threshold = 1 - (t + 1) / num_thresholds
                last = -1
                for rank, value in enumerate(norm):
                    if value >= threshold:
                        last = rank
                if last >= 0:
                    proposals[t] += sum(is_proposal[: last + 1])
                    hits[t] += recalled_so_far[last]
        precision = [hits[t] / proposals[t] if proposals[t] else float("nan") for t in range(num_thresholds)]
        if n_faces == 0:
            aps[setting] = float("nan")
            continue
        recall = [hits[t] / n_faces for t in range(num_thresholds)]
        aps[setting] = _loop_ap(recall, precision)
    return aps


# ----------------------------------------------------------------------------------------------
# Seeded test data
# ----------------------------------------------------------------------------------------------


def noisy_predictions(
    ground_truth: GroundTruth, seed: int, keep: float = 0.8, jitter: float = 0.12, false_per_image: float = 2.0
) -> dict[tuple[str, str], ImagePredictions]:
    """Detections derived from the GT: dropped faces, jittered boxes, duplicates, false positives, tied scores.

    Boxes are rounded to 0.1 px and scores to 1e-3 (ties on purpose); scores lie in [0.001, 0.999].
    """
    rng = np.random.default_rng(seed)
    result = {}
    for image in ground_truth.images:
        boxes = image.boxes[rng.random(image.boxes.shape[0]) < keep]
        sizes = np.maximum(boxes[:, 2:], 1.0)
        jittered = np.concatenate(
            [boxes[:, :2] + rng.normal(0.0, jitter, boxes[:, :2].shape) * sizes, sizes * np.exp(rng.normal(0.0, jitter * 1.25, sizes.shape))],
            axis=1,
        )
        duplicates = jittered[rng.random(jittered.shape[0]) < 0.1] + rng.normal(0.0, 1.0, (1, 4))
        n_false = rng.poisson(false_per_image)
        false_xy = rng.uniform(0.0, 1000.0, (n_false, 2))
        false_wh = rng.uniform(8.0, 150.0, (n_false, 2))
        all_boxes = np.round(np.concatenate([jittered, duplicates, np.concatenate([false_xy, false_wh], axis=1)]), 1)
        scores = np.concatenate([rng.beta(5.0, 2.0, jittered.shape[0]), rng.beta(2.0, 3.0, duplicates.shape[0]), rng.beta(2.0, 5.0, n_false)])
        scores = np.clip(np.round(scores, 3), 0.001, 0.999)
        result[image.key] = ImagePredictions(all_boxes, scores)
    return result


def _image(key: str, boxes: list[list[float]], easy: list[int], medium: list[int], hard: list[int]) -> GroundTruthImage:
    n = len(boxes)
    masks = {}
    for setting, rows in zip(DIFFICULTIES, (easy, medium, hard)):
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        masks[setting] = mask
    return GroundTruthImage("0--Test", key, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), masks)


def _preds(rows: list[list[float]]) -> ImagePredictions:
    array = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return ImagePredictions(array[:, :4].copy(), array[:, 4].copy())


def random_case(rng: np.random.Generator) -> tuple[GroundTruth, dict]:
    """A small random scene set: crowded, overlapping boxes, ignored faces, images without GT or detections."""
    images, predictions = [], {}
    for index in range(int(rng.integers(1, 6))):
        n_gt = int(rng.integers(0, 7))
        centers = rng.uniform(0, 60, (n_gt, 2))
        gt_boxes = np.round(np.concatenate([centers, rng.uniform(3, 25, (n_gt, 2))], axis=1))
        hard = [k for k in range(n_gt) if rng.random() < 0.7]
        medium = [k for k in hard if rng.random() < 0.7]
        easy = [k for k in medium if rng.random() < 0.6]
        key = f"img{index}"
        images.append(_image(key, gt_boxes.tolist(), easy, medium, hard))
        if rng.random() < 0.15:
            continue  # no prediction file at all
        n_pred = int(rng.integers(0, 10))
        source = gt_boxes[rng.integers(0, n_gt, n_pred)] if n_gt else rng.uniform(0, 60, (n_pred, 4))
        boxes = source + rng.normal(0, 2.0, source.shape)
        scores = rng.choice([0.2, 0.5, 0.5, 0.9], n_pred) if rng.random() < 0.3 else rng.random(n_pred)
        predictions[("0--Test", key)] = ImagePredictions(boxes, scores.astype(np.float64))
    return GroundTruth(tuple(images)), predictions


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------


def _assert_same_aps(actual: dict[str, float], expected: dict[str, float], tol: float = 1e-12) -> None:
    for setting in DIFFICULTIES:
        assert actual[setting] == pytest.approx(expected[setting], abs=tol, nan_ok=True), setting


@pytest.mark.parametrize("seed", range(40))
def test_vectorized_matches_loop_reference_on_random_cases(seed: int) -> None:
    ground_truth, predictions = random_case(np.random.default_rng(seed))
    _assert_same_aps(evaluate(ground_truth, predictions).ap, loop_reference(ground_truth, predictions))


def test_edge_cases_match_loop_reference() -> None:
    gt = GroundTruth(
        (
            _image("a", [[10, 10, 20, 20], [100, 100, 30, 30], [200, 200, 5, 5]], easy=[0], medium=[0, 1], hard=[0, 1]),
            _image("b", [[0, 0, 0, 0]], easy=[], medium=[], hard=[]),  # the official no-face placeholder
            _image("c", [[50, 50, 40, 40]], easy=[0], medium=[0], hard=[0]),
            _image("d", [[10, 10, 20, 20], [10, 10, 20, 20], [60, 10, 20, 20]], easy=[1, 2], medium=[0, 1, 2], hard=[0, 1, 2]),
            # IoU exactly 0.5 at the widest offsets the candidate search allows (GT twice / half as wide).
            _image("e", [[0, 0, 19, 9], [100, 0, 9, 9]], easy=[0, 1], medium=[0, 1], hard=[0, 1]),
        )
    )
    cases = {
        "duplicates": {("0--Test", "a"): _preds([[10, 10, 20, 20, 0.9], [11, 10, 20, 20, 0.8], [10, 11, 20, 20, 0.7]])},
        "ignored face hit first then counted": {("0--Test", "a"): _preds([[200, 200, 5, 5, 0.95], [201, 200, 5, 5, 0.9], [100, 100, 30, 30, 0.3]])},
        "all equal scores": {("0--Test", "a"): _preds([[10, 10, 20, 20, 0.5], [300, 300, 9, 9, 0.5]]), ("0--Test", "c"): _preds([[50, 50, 40, 40, 0.5]])},
        "detections on an image without faces": {
            ("0--Test", "b"): _preds([[0, 0, 0, 0, 0.99], [5, 5, 10, 10, 0.98]]),
            ("0--Test", "c"): _preds([[50, 50, 40, 40, 0.1]]),
        },
        "ties across GT (first GT wins)": {("0--Test", "d"): _preds([[10, 10, 20, 20, 0.4], [60, 10, 20, 20, 0.6]])},
        "IoU exactly 0.5 at the edges of the search window": {
            ("0--Test", "e"): _preds([[10, 0, 9, 9, 0.9], [90, 0, 19, 9, 0.8]]),
            ("0--Test", "d"): _preds([[60, 10, 20, 20, 0.1]]),
        },
    }
    for name, predictions in cases.items():
        _assert_same_aps(evaluate(gt, predictions).ap, loop_reference(gt, predictions))
        assert all(0.0 <= ap <= 1.0 for ap in evaluate(gt, predictions).ap.values()), name
    # The tie goes to the first (easy-ignored) box: the detection is no proposal in easy, so easy recalls only one face.
    tie = evaluate(gt, cases["ties across GT (first GT wins)"])
    assert tie.curves["easy"].proposals[-1] == 1 and tie.curves["easy"].true_positives[-1] == 1
    assert tie.curves["hard"].true_positives[-1] == 2
    edge = evaluate(gt, cases["IoU exactly 0.5 at the edges of the search window"])
    assert edge.curves["hard"].true_positives[-1] == 3


def test_no_predictions_gives_zero_ap_and_nan_precision() -> None:
    gt = GroundTruth((_image("a", [[10, 10, 20, 20]], easy=[0], medium=[0], hard=[0]),))
    result = evaluate(gt, {})
    assert result.ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
    assert np.isnan(result.curves["hard"].precision).all() and (result.curves["hard"].recall == 0).all()


def test_perfect_detector_scores_one_and_ignored_hits_cost_nothing() -> None:
    gt = GroundTruth((_image("a", [[10, 10, 20, 20], [100, 100, 30, 30], [300, 300, 6, 6]], easy=[0], medium=[0, 1], hard=[0, 1]),))
    preds = {("0--Test", "a"): _preds([[10, 10, 20, 20, 0.9], [100, 100, 30, 30, 0.8], [300, 300, 6, 6, 0.95]])}
    result = evaluate(gt, preds)
    assert result.ap["medium"] == pytest.approx(1.0) and result.ap["hard"] == pytest.approx(1.0)
    # easy ignores the medium face: hitting it (or the face ignored everywhere) is no proposal at all.
    assert result.ap["easy"] == pytest.approx(1.0)
    assert result.curves["easy"].proposals[-1] == 1 and result.curves["hard"].proposals[-1] == 2


def test_false_positive_ranked_first_halves_precision_at_top() -> None:
    gt = GroundTruth((_image("a", [[10, 10, 20, 20]], easy=[0], medium=[0], hard=[0]),))
    preds = {("0--Test", "a"): _preds([[500, 500, 20, 20, 0.9], [10, 10, 20, 20, 0.1]])}
    assert evaluate(gt, preds).ap["easy"] == pytest.approx(0.5)


def test_setting_without_faces_is_undefined() -> None:
    gt = GroundTruth((_image("a", [[10, 10, 20, 20]], easy=[], medium=[0], hard=[0]),))
    result = evaluate(gt, {("0--Test", "a"): _preds([[10, 10, 20, 20, 0.5]])})
    assert math.isnan(result.ap["easy"]) and result.summary()["easy"] is None and result.ap["hard"] == pytest.approx(1.0)


def test_subset_ground_truth_evaluates_only_its_images() -> None:
    gt = GroundTruth((_image("a", [[10, 10, 20, 20]], easy=[0], medium=[0], hard=[0]), _image("b", [[10, 10, 20, 20]], easy=[0], medium=[0], hard=[0])))
    preds = {("0--Test", "a"): _preds([[10, 10, 20, 20, 0.9]]), ("0--Other", "z"): _preds([[0, 0, 5, 5, 0.1]])}
    assert evaluate(gt, preds).ap["hard"] == pytest.approx(0.5)
    assert evaluate(gt.subset([("0--Test", "a")]), preds).ap["hard"] == pytest.approx(1.0)


def test_normalization_uses_true_min_and_max() -> None:
    assert normalize_scores(np.array([3.0, 5.0, 4.0])).tolist() == [0.0, 1.0, 0.5]
    assert normalize_scores(np.array([2.0, 2.0])).tolist() == [1.0, 1.0]


def test_voc_ap_skips_nan_like_matlab() -> None:
    recall = np.array([0.0, 0.5, 0.5, 1.0])
    precision = np.array([np.nan, 1.0, np.nan, 0.5])
    assert voc_ap(recall, precision) == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)


def test_config_from_dict() -> None:
    assert EvaluationConfig.from_dict({"iou_threshold": 0.5, "num_thresholds": 1000}) == EvaluationConfig()
    with pytest.raises(Exception, match="unknown evaluation setting"):
        EvaluationConfig.from_dict({"iou": 0.5})


# Expected APs of noisy_predictions(<real val GT>, seed) from the public Python port of the official
# MATLAB code (wondervictor/WiderFace-Evaluation @ 53474e0d, evaluation.py run outside this project with
# its Cython box_overlaps replaced by an equivalent numpy function and the unused IPython import removed),
# fed the prediction files written by safefakes.data.predictions.write_predictions.
# Cases: (seed, noise keyword arguments, expected APs). Both the port and safefakes see the same files.
PORT_REFERENCE_CASES = {
    "heavy noise": (0, {}, {"easy": 0.371582001165926, "medium": 0.463731385664924, "hard": 0.5798387395066428}),
    "mild noise": (
        1,
        {"keep": 0.97, "jitter": 0.05, "false_per_image": 1.0},
        {"easy": 0.9366135247656113, "medium": 0.9479218848350512, "hard": 0.9533303149091915},
    ),
}


@pytest.fixture(scope="module")
def real_ground_truth(shared_data) -> GroundTruth:
    return load_ground_truth(shared_data / "wider_face" / "ground_truth")


@pytest.mark.parametrize("case", sorted(PORT_REFERENCE_CASES))
def test_matches_public_port_on_real_validation_ground_truth(real_ground_truth: GroundTruth, case: str) -> None:
    seed, noise, expected = PORT_REFERENCE_CASES[case]
    result = evaluate(real_ground_truth, noisy_predictions(real_ground_truth, seed, **noise))
    assert result.num_images == 3226 and result.face_counts == {"easy": 7211, "medium": 13319, "hard": 31958}
    for setting in DIFFICULTIES:
        assert result.ap[setting] == pytest.approx(expected[setting], abs=1e-6), setting


@pytest.mark.parametrize(
    "method, expected",
    [("HR", {"easy": 0.9257, "medium": 0.9105, "hard": 0.8060}), ("hr_res101", {"easy": 0.9302, "medium": 0.9157, "hard": 0.8303})],
)
def test_official_baseline_curves_give_published_aps(shared_data, method: str, expected: dict[str, float]) -> None:
    folder = shared_data / "wider_face" / "eval_baselines"
    for setting in DIFFICULTIES:
        with h5py.File(folder / f"wider_pr_info_{method}_{setting}_val.mat", "r") as handle:
            curve = np.asarray(handle["pr_cruve"]).T  # MATLAB v7.3 stores it transposed: (1000, 2)
        assert curve.shape == (1000, 2)
        assert voc_ap(curve[:, 1], curve[:, 0]) == pytest.approx(expected[setting], abs=5e-5), setting


def test_non_finite_predictions_are_rejected() -> None:
    gt = GroundTruth((_image("a", [[10, 10, 20, 20]], easy=[0], medium=[0], hard=[0]),))
    with pytest.raises(Exception, match="0--Test/a hold non-finite"):
        evaluate(gt, {("0--Test", "a"): _preds([[10, 10, 20, 20, float("nan")]])})
