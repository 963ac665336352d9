"""Config errors stop `snakemake -n` while the DAG is built, naming the key, before any job is queued (issue 11, section 6).

Each defect is written into a copy of the demo preset (config.yaml) in a temporary folder; the committed presets
must still dry-run cleanly. The package functions the workflow calls are checked directly too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from test_workflow import PROJECT_ROOT, _snakemake

from safefakes.anonymize.base import method_config
from safefakes.anonymize.cli import job_params
from safefakes.common.errors import SafefakesError
from safefakes.detect.registry import check_hparams

#: The demo preset every defect is written into.
DEMO_CONFIG = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
#: Timeout of one dry run, in seconds (they take seconds; the paper preset's DAG is the largest).
DRY_RUN_TIMEOUT_S = 300
#: A negative blur kernel size: out of range for `safefakes anonymize`.
NEGATIVE_KERNEL = -3


def _without_faster_rcnn_privacy(config: dict) -> None:
    """privacy.detector names faster_rcnn, which the config no longer trains."""
    del config["detectors"]["faster_rcnn"]
    config["privacy"]["detector"] = "faster_rcnn"


#: (defect id, change to the demo config, texts the refusal must show: the config location and the bad key).
DEFECTS: list[tuple[str, Callable[[dict], None], tuple[str, ...]]] = [
    ("misspelled_method_param", lambda c: c["anonymize"]["methods"].update(blur={"kernal": 15}), ("anonymize.methods.blur", "kernal")),
    ("invalid_method_value", lambda c: c["anonymize"]["methods"].update(blur={"kernel": NEGATIVE_KERNEL}), ("anonymize.methods.blur", "kernel must be >= 1")),
    ("unknown_method", lambda c: c["anonymize"]["methods"].update(swirl={}), ("anonymize.methods.swirl", "unknown anonymization method 'swirl'")),
    ("detector_model_typo", lambda c: c["detectors"]["tinaface"]["model"].update(widht_scale=0.5), ("detectors.tinaface", "widht_scale")),
    ("unconfigured_privacy_detector", _without_faster_rcnn_privacy, ("privacy.detector", "faster_rcnn")),
    ("top_level_typo", lambda c: c.update(detectabilty=c.pop("detectability")), ("detectabilty",)),
]


def _dry_run(workdir: Path, config: dict) -> tuple[int, str]:
    """Dry-run the whole DAG of ``config`` in ``workdir``: (exit status, stdout and stderr)."""
    result = _snakemake(workdir, config, "--dry-run", "--quiet", "rules", timeout=DRY_RUN_TIMEOUT_S)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(("change", "expected"), [(change, expected) for _, change, expected in DEFECTS], ids=[name for name, _, _ in DEFECTS])
def test_dry_run_refuses_defective_config(tmp_path: Path, change: Callable[[dict], None], expected: tuple[str, ...]) -> None:
    config = copy.deepcopy(DEMO_CONFIG)
    change(config)
    status, output = _dry_run(tmp_path, config)
    assert status != 0, output[-3000:]
    for text in expected:
        assert text in output, (text, output[-3000:])
    assert "This was a dry-run" not in output  # stopped while the DAG was built: no job was planned


def test_dry_run_reports_every_refused_parameter_at_once(tmp_path: Path) -> None:
    """Every job kind's parameters are checked (anonymize, reid sweeps, train/predict, train-gan), all in one message."""
    config = copy.deepcopy(DEMO_CONFIG)
    config["anonymize"]["methods"].update(
        blur={"kernal": 15},
        pixelate={"grid": 12},  # the reid sweep's `strength` sets the grid too: the reid job refuses both
        ciagan={"dataset_landmark": False},
        sun2018={"checkpoint": "generator.pt"},  # the workflow gives it with --checkpoint
    )
    config["detectors"]["dsfd"]["train"]["learning_rate"] = 0.1
    config["detectors"]["faster_rcnn"]["train"]["optimizer"]["name"] = "adam"
    config["gans"]["models"]["deepprivacy"]["hparams"]["train"]["batchsize"] = 4
    status, output = _dry_run(tmp_path, config)
    assert status != 0
    expected = {
        "anonymize.methods.blur": "kernal",
        "privacy.reid.sweeps.pixelate": "give either strength or grid",
        "anonymize.methods.ciagan": "dataset_landmark",
        "anonymize.methods.sun2018": "either with --checkpoint or as a parameter",
        "detectors.dsfd": "learning_rate",
        "detectors.faster_rcnn": "train.optimizer.name",
        "gans.models.deepprivacy.hparams": "batchsize",
    }
    for location, reason in expected.items():
        line = next((line for line in output.splitlines() if line.strip().startswith(f"{location}:")), None)
        assert line is not None and reason in line, (location, output[-3000:])


@pytest.mark.parametrize("preset", ["config.yaml", "config/paper.yaml", "config/real_val.yaml"])
def test_committed_presets_dry_run_cleanly(tmp_path: Path, preset: str) -> None:
    config = yaml.safe_load((PROJECT_ROOT / preset).read_text())
    # The paper's anonymizer face sets (FDF, PIPA, CelebA) are the user's to provide: empty folders stand in.
    for spec in config.get("gans", {}).get("train_sets", {}).values():
        if "path" in spec:
            (tmp_path / spec["path"]).mkdir(parents=True, exist_ok=True)
    status, output = _dry_run(tmp_path, config)
    assert status == 0, output[-3000:]
    assert "would refuse" not in output and "not checked" not in output


def test_method_config_names_the_method_and_key() -> None:
    assert method_config("blur", {"kernel": "15"}).kernel == 15
    with pytest.raises(SafefakesError, match=r"method blur: unknown BlurConfig setting\(s\): kernal; valid: strength, "):
        method_config("blur", {"kernal": "15"})
    with pytest.raises(SafefakesError, match="method blur: kernel must be >= 1"):
        method_config("blur", {"kernel": str(NEGATIVE_KERNEL)})
    with pytest.raises(SafefakesError, match="unknown anonymization method 'swirl'"):
        method_config("swirl", {})


def test_job_params_checks_like_the_anonymize_command() -> None:
    assert job_params("deepprivacy", {"min_face_size": "5"}, "generator.pt") == {"min_face_size": "5", "checkpoint": "generator.pt"}
    with pytest.raises(SafefakesError, match="needs --checkpoint"):
        job_params("deepprivacy", {}, None)
    with pytest.raises(SafefakesError, match="takes no --checkpoint"):
        job_params("blur", {}, "generator.pt")
    with pytest.raises(SafefakesError, match="not both"):
        job_params("deepprivacy", {"checkpoint": "a.pt"}, "b.pt")
    with pytest.raises(SafefakesError, match="kernal"):
        job_params("blur", {"kernal": "15"}, None)


def test_check_hparams_refuses_what_training_would() -> None:
    resolved = check_hparams("dsfd", {"train": {"batch_size": 2}})
    assert resolved["train"]["batch_size"] == 2 and set(resolved) >= {"model", "augment", "train", "predict"}
    refusals = [
        ("dsfd", {"model": {"widht_scale": 0.25}}, "widht_scale"),
        ("tinaface", {"augment": {"outptu_size": 256}}, "outptu_size"),
        ("faster_rcnn", {"train": {"lr": 0.1}}, "lr"),
        ("faster_rcnn", {"predict": {"score_threshold": 2.0}}, "score_threshold"),
        ("dsfd", {"optimiser": {}}, "optimiser"),
    ]
    for detector, overrides, key in refusals:
        with pytest.raises(SafefakesError, match=rf"detector {detector}: .*{key}"):
            check_hparams(detector, overrides)
