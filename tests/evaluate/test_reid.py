"""Re-identification: error rates on known distributions, scenario bookkeeping, identity readers, and
the privacy test on real identity photos (dlib descriptors, cached once per session)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from safefakes.cli import main
from safefakes.common.errors import SafefakesError
from safefakes.data.identities import IdentitySample, load_identities
from safefakes.data.wider import FaceBox, FaceExtras, ImageAnnotation, write_bbx_gt, write_extras
from safefakes.evaluate import reid
from safefakes.evaluate.face_descriptors import DescriptorConfig, FaceDescriptorModel
from safefakes.evaluate.reid import Acquisition, ReidConfig
from safefakes.plots.privacy import pareto_front

#: Identities of the deepface fixture used for the real-photo tests (19 photos; keeps the file fast).
REAL_IDENTITIES = ("id01", "id02", "id03", "id04", "id05")
FAST_DESCRIPTOR = DescriptorConfig(max_image_side=500, upsample=0)


# --- error rates --------------------------------------------------------------------------------


def test_eer_of_two_gaussians_matches_their_crossing() -> None:
    rng = np.random.default_rng(0)
    mated, nonmated = rng.normal(0.0, 1.0, 40_000), rng.normal(2.0, 1.0, 40_000)
    # Equal spread: FMR = FNMR at the midpoint 1, where each is Phi(-1).
    assert reid.equal_error_rate(mated, nonmated) == pytest.approx(norm.cdf(-1.0), abs=0.006)


def test_eer_exact_small_case_and_degenerate_cases() -> None:
    mated, nonmated = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.5, 5.0, 6.0, 7.0])
    assert reid.equal_error_rate(mated, nonmated) == pytest.approx(0.25)  # at t = 3.5: FMR = FNMR = 1/4
    assert reid.equal_error_rate(np.array([0.1, 0.2]), np.array([0.8, 0.9])) == pytest.approx(0.0)
    assert reid.equal_error_rate(np.full(3, math.inf), np.full(5, math.inf)) == pytest.approx(0.5)
    assert math.isnan(reid.equal_error_rate(np.array([]), np.array([1.0])))


def test_rates_and_confusion_matrix_at_threshold() -> None:
    mated, nonmated = np.array([0.2, 0.5, 0.7, 0.9]), np.array([0.3, 0.8, 1.0, 1.1, 1.2])
    fmr, fnmr = reid.rates_at_threshold(mated, nonmated, 0.6)
    assert (fmr, fnmr) == (pytest.approx(1 / 5), pytest.approx(2 / 4))
    np.testing.assert_allclose(reid.confusion_matrix(mated, nonmated, 0.6), [[50.0, 20.0], [50.0, 80.0]])


def test_det_curve_runs_from_reject_all_to_accept_all() -> None:
    _thresholds, fmr, fnmr = reid.det_curve(np.array([0.1, 0.4]), np.array([0.3, 0.9]))
    assert (fmr[0], fnmr[0], fmr[-1], fnmr[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert np.all(np.diff(fmr) >= 0) and np.all(np.diff(fnmr) <= 0)


# --- scenario bookkeeping -------------------------------------------------------------------------


def _unit(index: int) -> np.ndarray:
    vector = np.zeros(128)
    vector[index] = 1.0
    return vector


def test_scenarios_pairs_and_failure_to_acquire() -> None:
    samples = [IdentitySample(f"p{i}", Path(f"p{i}.jpg"), identity) for i, identity in enumerate("aabb")]
    originals = [Acquisition(_unit(0), None), Acquisition(_unit(0), None), Acquisition(_unit(5), None), Acquisition(_unit(5), None)]
    anonymized = [Acquisition(_unit(0) * 0.9, None), Acquisition(None, None), Acquisition(_unit(5), None), Acquisition(_unit(5), None)]
    config = ReidConfig()
    naive = reid.score_scenario("naive", samples, originals, anonymized, config)
    assert len(naive.distances) == 16 and naive.mated.sum() == 8  # every pair, same photo included
    assert naive.fta == pytest.approx(0.25)
    failed_rows = [d for p, d in zip(naive.probes, naive.distances) if p == "p1"]
    assert all(math.isinf(d) for d in failed_rows)  # the FTA photo never matches
    parrot = reid.score_scenario("parrot", samples, originals, anonymized, config)
    assert len(parrot.distances) == 12 and all(p != g for p, g in zip(parrot.probes, parrot.galleries))
    dropped = reid.score_scenario("naive", samples, originals, anonymized, ReidConfig(failure_as_nonmatch=False, include_same_photo_pairs=False))
    assert len(dropped.distances) == 12 - 3  # 12 off-diagonal pairs minus the 3 with the failed probe p1
    assert naive.rank1 == pytest.approx(3 / 4)  # p1's probe failed to acquire
    assert parrot.rank1 == pytest.approx(2 / 4)  # p0's only same-identity partner p1 failed; p1 failed
    reverse = reid.score_scenario("reverse", samples, originals, anonymized, config)
    assert dict(zip(zip(reverse.probes, reverse.galleries), reverse.distances))[("p0", "p0")] == pytest.approx(0.1)


def test_config_from_dict_and_errors() -> None:
    config = ReidConfig.from_dict({"threshold": 0.5, "scenarios": ["naive"], "descriptor": {"upsample": 0}})
    assert config.scenarios == ("naive",) and config.descriptor.upsample == 0
    with pytest.raises(SafefakesError, match="unknown reid setting"):
        ReidConfig.from_dict({"treshold": 0.5})
    with pytest.raises(SafefakesError, match="unknown scenario"):
        ReidConfig(scenarios=("mirror",))


def test_pareto_front() -> None:
    utility, privacy = np.array([0.9, 0.5, 0.8, 0.4]), np.array([0.1, 0.5, 0.1, 0.6])
    assert pareto_front(utility, privacy).tolist() == [True, True, False, True]


# --- identity readers -----------------------------------------------------------------------------


def test_identity_readers(shared_data: Path, tmp_path: Path) -> None:
    deepface = load_identities(shared_data / "face_recognition" / "deepface")
    assert len(deepface) == 39 and len({s.identity for s in deepface}) == 13
    knn = load_identities(shared_data / "face_recognition" / "face_recognition_knn")
    assert all(";" not in s.identity for s in knn) and not any("obama_and_biden" in s.key for s in knn)
    lfw = tmp_path / "lfw"
    for name in ("ann", "bob"):
        (lfw / name).mkdir(parents=True)
        for i in range(2):
            (lfw / name / f"{name}_{i}.jpg").write_bytes(b"")
    (lfw / "carl").mkdir()
    (lfw / "carl" / "carl_0.jpg").write_bytes(b"")  # a single photo cannot be matched: dropped
    assert [s.key for s in load_identities(lfw)] == ["ann/ann_0.jpg", "ann/ann_1.jpg", "bob/bob_0.jpg", "bob/bob_1.jpg"]


def test_synthetic_identities_from_extras(tmp_path: Path) -> None:
    faces = [FaceBox(10, 10, 40, 40), FaceBox(60, 10, 40, 40)]
    annotations = [ImageAnnotation("0--a/x.jpg", faces), ImageAnnotation("0--a/y.jpg", faces)]
    write_bbx_gt(tmp_path / "wider_face_split" / "wider_face_train_bbx_gt.txt", annotations)
    extras = {"0--a/x.jpg": [FaceExtras(identity=1), FaceExtras(identity=2)], "0--a/y.jpg": [FaceExtras(identity=1), FaceExtras(identity=None)]}
    write_extras(tmp_path / "wider_face_split" / "wider_face_train_extras.json", extras)
    with pytest.raises(SafefakesError, match="two identities"):
        load_identities(tmp_path)  # identity 2 has one photo only
    extras["0--a/y.jpg"][1] = FaceExtras(identity=2)
    write_extras(tmp_path / "wider_face_split" / "wider_face_train_extras.json", extras)
    samples = load_identities(tmp_path)
    assert [(s.key, s.identity, s.box) for s in samples][:2] == [("0--a/x.jpg#0", "1", (10, 10, 40, 40)), ("0--a/y.jpg#0", "1", (10, 10, 40, 40))]


# --- the privacy test on real identity photos -----------------------------------------------------


@pytest.fixture(scope="session")
def real_reid(shared_data: Path) -> dict:
    """Samples, descriptor model and original acquisitions of the real identity subset, computed once."""
    samples = [s for s in load_identities(shared_data / "face_recognition" / "deepface") if s.identity in REAL_IDENTITIES]
    config = ReidConfig(descriptor=FAST_DESCRIPTOR)
    model = FaceDescriptorModel(FAST_DESCRIPTOR)
    return {"samples": samples, "model": model, "config": config, "originals": reid.acquire_originals(samples, model, config), "anonymized": {}}


def _anonymized_result(real_reid: dict, method: str, strength: float | None, config: ReidConfig | None = None) -> reid.ReidResult:
    key = (method, strength)
    if method == reid.NO_ANONYMIZATION:
        real_reid["anonymized"][key] = real_reid["originals"]
    if key not in real_reid["anonymized"]:
        function = reid.anonymizer_function(method, strength)
        real_reid["anonymized"][key] = reid.acquire_anonymized(real_reid["samples"], real_reid["originals"], real_reid["model"], function, real_reid["config"])
    return reid.evaluate_scenarios(method, strength, real_reid["samples"], real_reid["originals"], real_reid["anonymized"][key], config or real_reid["config"])


def _eer(result: reid.ReidResult, scenario: str) -> float:
    return next(row["eer"] for row in result.summary_rows() if row["scenario"] == scenario)


def test_originals_match_each_other(real_reid: dict) -> None:
    assert all(a.descriptor is not None for a in real_reid["originals"])
    result = _anonymized_result(real_reid, reid.NO_ANONYMIZATION, None, ReidConfig(descriptor=FAST_DESCRIPTOR, include_same_photo_pairs=False))
    row = next(r for r in result.summary_rows() if r["scenario"] == "naive")
    assert row["eer"] < 0.10 and row["fta"] == 0.0
    assert row["n_mated"] == sum(len([t for t in real_reid["samples"] if t.identity == s.identity]) - 1 for s in real_reid["samples"])


def test_blackout_destroys_matching(real_reid: dict) -> None:
    result = _anonymized_result(real_reid, "blackout", None)
    for row in result.summary_rows():
        assert row["fta"] >= 0.9 or row["eer"] >= 0.4, row


def test_blur_eer_rises_with_strength(real_reid: dict) -> None:
    weak, strong = _anonymized_result(real_reid, "blur", 5), _anonymized_result(real_reid, "blur", 90)
    assert _eer(weak, "naive") < 0.15
    assert _eer(strong, "naive") > _eer(weak, "naive") + 0.1


def test_reid_cli_gather_det_and_frontier(shared_data: Path, tmp_path: Path) -> None:
    identities = tmp_path / "ids"
    for name in ("id06", "id07"):
        shutil.copytree(shared_data / "face_recognition" / "deepface" / name, identities / name)
    config = json.dumps({"descriptor": {"max_image_side": 500, "upsample": 0}})
    summaries = []
    for method, strength in (("blur", "5"), (reid.NO_ANONYMIZATION, None)):
        stem = tmp_path / f"{method}_{strength}"
        argv = ["reid", "--identities", str(identities), "--method", method, "--config-json", config]
        argv += ["--out-csv", f"{stem}.csv", "--out-scores", f"{stem}_scores.csv", "--out-acquisition", f"{stem}_acq.csv"]
        assert main(argv + (["--strength", strength] if strength else [])) == 0
        summaries.append(f"{stem}.csv")
    gathered = tmp_path / "reid.csv"
    assert main(["reid-gather", "--inputs", *summaries, "--out", str(gathered)]) == 0
    rows = reid.read_csv_rows(gathered)
    assert [(r["method"], r["scenario"]) for r in rows][:3] == [("blur", "naive"), ("blur", "reverse"), ("blur", "parrot")]
    assert list(rows[0]) == list(reid.RESULT_COLUMNS)
    acquisition = reid.read_csv_rows(tmp_path / "blur_5_acq.csv")
    assert len(acquisition) == 4 and all(r["original_acquired"] == "1" for r in acquisition)
    assert next(r for r in rows if r["method"] == "none" and r["scenario"] == "naive")["eer"] == "0.000000"
    det = tmp_path / "det_naive.png"
    assert main(["plot-det", "--scores", str(tmp_path / "blur_5_scores.csv"), str(tmp_path / "none_None_scores.csv"), "--out", str(det)]) == 0
    assert det.read_bytes()[:4] == b"\x89PNG"
    ap = tmp_path / "ap.json"
    ap.write_text(json.dumps({"easy": 0.5, "medium": 0.4, "hard": 0.2}))
    frontier = tmp_path / "frontier.png"
    assert main(["plot-frontier", "--reid", str(gathered), "--ap", str(ap), str(ap), "--labels", "blur@5.0", "none", "--out", str(frontier)]) == 0
    assert frontier.stat().st_size > 1000
    assert main(["plot-frontier", "--reid", str(gathered), "--ap", str(ap), "--labels", "pixelate@10", "--out", str(frontier)]) == 1


def test_cli_constants_match_the_modules() -> None:
    """The CLI names the metrics without importing the heavy module: keep them in step."""
    from safefakes.evaluate import image_metrics, privacy_cli

    assert tuple(privacy_cli.METRIC_NAMES) == tuple(image_metrics.ALL_METRICS)
