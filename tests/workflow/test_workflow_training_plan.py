"""How the workflow plans training as the papers do (issue 11, sections 3 and 4): Faster R-CNN's length in epochs,
CIAGAN's CelebA identity subset, and Fig. 7's FDF* bar from an externally supplied DeepPrivacy checkpoint."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from test_workflow import PROJECT_ROOT, _snakemake, _validate, load_test_config

from safefakes.data.wider import WIDER_TRAIN_IMAGES

#: Timeout of one dry run, in seconds (they take seconds; the paper preset's DAG is the largest).
DRY_RUN_TIMEOUT_S = 300
#: Supplement Sec. III-A: 10 epochs at batch 4 over WIDER's training images, i.e. 10 x ceil(12,880 / 4) iterations.
FASTER_RCNN_PAPER_ITERATIONS = 32_200
#: The Fig. 7 bar of the released 40M-image DeepPrivacy, and the dataset its checkpoint anonymizes.
FDF_STAR = "FDF*"
FDF_STAR_DATASET = "deepprivacy-external-fdf_star"


def _paper_config(workdir: Path) -> dict:
    """The paper preset, with empty folders standing in for the anonymizers' face sets (the user's to provide)."""
    config = yaml.safe_load((PROJECT_ROOT / "config" / "paper.yaml").read_text())
    for spec in config["gans"]["train_sets"].values():
        (workdir / spec["path"]).mkdir(parents=True, exist_ok=True)
    return config


def test_paper_preset_trains_faster_rcnn_ten_epochs_and_dsfd_at_fig6_points(tmp_path: Path) -> None:
    assert FASTER_RCNN_PAPER_ITERATIONS == 10 * -(-WIDER_TRAIN_IMAGES // 4)
    config = _paper_config(tmp_path)
    assert config["detectors"]["faster_rcnn"] == {"epochs": [10]}
    result = _snakemake(
        tmp_path, config, "--dry-run", "--printshellcmds", "results/figures/fig6_faster_rcnn.png", "results/figures/fig6_dsfd.png", timeout=DRY_RUN_TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert f"results/models/faster_rcnn/original/iter_{FASTER_RCNN_PAPER_ITERATIONS}.pt" in output
    assert (
        f"--detector faster_rcnn --wider-root results/anonymized/original --split train --hparams '{{}}' --iterations {FASTER_RCNN_PAPER_ITERATIONS}" in output
    )
    assert "results/models/faster_rcnn/original/iter_60000.pt" not in output and "results/models/faster_rcnn/original/iter_7500.pt" not in output
    for points in (7500, 15000, 60000):  # DSFD keeps Fig. 6's points
        assert f"results/models/dsfd/original/iter_{points}.pt" in output


def test_epochs_count_the_synthetic_training_set_and_exclude_iterations(tmp_path: Path) -> None:
    from snakemake.exceptions import WorkflowError

    config = load_test_config()  # 6 synthetic training images; at batch 2: 3 iterations an epoch
    config["detectors"]["faster_rcnn"] = {**config["detectors"]["faster_rcnn"], "epochs": [1, 2], "train": {"batch_size": 2}}
    result = _snakemake(tmp_path, config, "--dry-run", "results/figures/fig6_faster_rcnn.png", timeout=DRY_RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "results/models/faster_rcnn/original/iter_3.pt" in output and "results/models/faster_rcnn/original/iter_6.pt" in output
    assert "results/models/faster_rcnn/original/iter_4.pt" not in output  # training.iterations [2, 4] are not used
    config["detectors"]["faster_rcnn"]["iterations"] = [3]
    with pytest.raises(WorkflowError):
        _validate(config)


def test_paper_preset_trains_ciagan_on_the_celeba_identity_subset(tmp_path: Path) -> None:
    config = _paper_config(tmp_path)
    assert config["gans"]["train_sets"]["celeba"] == {"path": "resources/celeba", "min_faces_per_identity": 30, "max_identities": 1200}
    result = _snakemake(tmp_path, config, "--dry-run", "--printshellcmds", "results/gans/ciagan/celeba/iter_100000.pt", timeout=DRY_RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--train-set resources/celeba --min-faces-per-identity 30 --max-identities 1200 --iterations 100000" in result.stdout


def _with_fdf_star(config: dict, path: str) -> dict:
    config = copy.deepcopy(config)
    config["gans"]["fig7"]["external"] = {FDF_STAR: path}
    return config


def test_fig7_external_checkpoint_is_a_bar_and_a_missing_file_stops_the_dag(tmp_path: Path) -> None:
    config = _with_fdf_star(load_test_config(), "released/deepprivacy_40M.pt")
    missing = _snakemake(tmp_path, config, "--dry-run", "results/figures/fig7_faster_rcnn.png", timeout=DRY_RUN_TIMEOUT_S)
    output = missing.stdout + missing.stderr
    assert missing.returncode != 0 and f"gans.fig7.external.{FDF_STAR}: checkpoint released/deepprivacy_40M.pt not found" in output
    assert "This was a dry-run" not in output  # stopped while the DAG was built

    (tmp_path / "released").mkdir()
    (tmp_path / "released" / "deepprivacy_40M.pt").write_bytes(b"stand-in")
    result = _snakemake(tmp_path, config, "--dry-run", "--printshellcmds", "results/figures/fig7_faster_rcnn.png", timeout=DRY_RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    checkpoint = tmp_path / "released" / "deepprivacy_40M.pt"
    # The external checkpoint anonymizes with DeepPrivacy's configured parameters (--param ...) and its own weights.
    anonymize = next(line for line in output.splitlines() if f"--out results/anonymized/{FDF_STAR_DATASET}" in line)
    assert "--method deepprivacy " in anonymize and f"--checkpoint {checkpoint} --wider-root results/data/synthetic --split train" in anonymize
    fig7 = next(line for line in output.splitlines() if "plot-fig7" in line)
    bars = [item.split("=")[0].strip("'") for item in fig7.split("--result ")[1:]]
    assert bars == ["original", "synth_few", "synth", FDF_STAR]
    assert f"'{FDF_STAR}=results/eval/faster_rcnn/{FDF_STAR_DATASET}/iter_4.json'" in fig7
    # Each GAN bar's training faces come from the manifest of the training set its detector was trained on.
    evaluated = dict(item.split()[0].strip("'").split("=") for item in fig7.split("--result ")[1:])
    anonymized = dict(item.split()[0].strip("'").split("=") for item in fig7.split("--anonymized ")[1:])
    assert list(anonymized) == ["synth_few", "synth", FDF_STAR] and "--faces" not in fig7
    for label, root in anonymized.items():
        assert root == evaluated[label].replace("results/eval/faster_rcnn/", "results/anonymized/").rsplit("/", 1)[0]
    assert anonymized[FDF_STAR] == f"results/anonymized/{FDF_STAR_DATASET}"


def test_paper_preset_names_fdf_star_and_the_demo_needs_none(tmp_path: Path) -> None:
    paper_text = (PROJECT_ROOT / "config" / "paper.yaml").read_text()
    assert f'# external: {{"{FDF_STAR}": resources/' in paper_text  # documented, off until the user supplies the file
    demo = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    assert "external" not in demo["gans"]["fig7"]
    config = _with_fdf_star(_paper_config(tmp_path), "resources/deepprivacy/fdf_40M_images.pt")
    _validate(config)
    refused = _snakemake(tmp_path, config, "--dry-run", "--quiet", "rules", timeout=DRY_RUN_TIMEOUT_S)
    assert refused.returncode != 0 and f"gans.fig7.external.{FDF_STAR}" in refused.stdout + refused.stderr
