"""The Snakemake workflow: config validation, the DAG of both presets, and one whole run on a tiny config."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = PROJECT_ROOT / "Snakefile"
SCHEMA = PROJECT_ROOT / "workflow" / "schemas" / "config.schema.yaml"

#: The workflow tests' configs (the snakemake-workflows `.test/` convention): tiny.yaml, and slurm_micro.yaml for the live SLURM test.
TEST_CONFIGS = PROJECT_ROOT / ".test" / "config"


def load_test_config(name: str = "tiny") -> dict:
    """``.test/config/<name>.yaml``, read afresh: the caller may change it."""
    return yaml.safe_load((TEST_CONFIGS / f"{name}.yaml").read_text())


def _demo_detector(name: str) -> dict:
    """The demo's (config.yaml) settings of detector ``name``, without its method list and iteration points."""
    entry = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())["detectors"][name]
    return {key: value for key, value in entry.items() if key not in ("methods", "iterations")}


def _snakemake(workdir: Path, config: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run snakemake on the project's Snakefile in ``workdir`` with ``config`` (written there)."""
    config_path = workdir / "test_config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "SAFEFAKES_NO_PROGRESS": "1"}
    command = [str(bin_dir / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(workdir), "--configfile", str(config_path), *args]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def _validate(config: dict) -> dict:
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, str(SCHEMA))
    return config


@pytest.mark.parametrize("path", ["config.yaml", "config/paper.yaml"])
def test_presets_validate(path: str) -> None:
    _validate(yaml.safe_load((PROJECT_ROOT / path).read_text()))


@pytest.mark.parametrize("path", sorted(TEST_CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_test_configs_validate(path: Path) -> None:
    _validate(yaml.safe_load(path.read_text()))


def test_test_configs_use_the_demo_faster_rcnn() -> None:
    """The test configs run the demo's slim Faster R-CNN (slurm_micro.yaml at its images' 192 px): when config.yaml
    changes it, copy the change into .test/config/."""
    demo = _demo_detector("faster_rcnn")
    assert load_test_config("tiny")["detectors"]["faster_rcnn"] == demo
    micro = copy.deepcopy(demo)
    micro["model"].update(min_size=192, max_size=192)
    micro["augment"]["output_size"] = 192
    assert load_test_config("slurm_micro")["detectors"]["faster_rcnn"] == micro


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["detectors"].update({"yolo": {}}),
        lambda c: c["dataset"].update({"source": "imagenet"}),
        lambda c: c["training"].update({"iterations": []}),
        lambda c: c["detectors"]["faster_rcnn"].update({"optimiser": {}}),
        lambda c: c["detectors"]["faster_rcnn"]["model"].update({"pretrained": "imagenet_if_available"}),
    ],
)
def test_schema_rejects_bad_configs(change) -> None:
    from snakemake.exceptions import WorkflowError

    config = load_test_config("tiny")
    change(config)
    with pytest.raises(WorkflowError):
        _validate(config)


def test_paper_preset_dry_runs(tmp_path: Path) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "config" / "paper.yaml").read_text())
    # The anonymizers' face sets (FDF, PIPA, CelebA) are the user's to provide; without them the DAG stops
    # at a missing input naming the folder.
    missing = _snakemake(tmp_path, config, "--dry-run", "--quiet", "rules", timeout=300)
    assert missing.returncode != 0 and "MissingInputException" in missing.stdout + missing.stderr
    assert any(f"resources/{name}" in missing.stdout + missing.stderr for name in ("fdf", "pipa", "celeba"))
    for spec in config["gans"]["train_sets"].values():
        (tmp_path / spec["path"]).mkdir(parents=True, exist_ok=True)
    result = _snakemake(tmp_path, config, "--dry-run", "--quiet", "rules", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for rule in ("download_wider", "anonymize_train", "train_detector", "predict_val", "evaluate_val", "fig4", "fig6", "table2", "reid"):
        assert rule in output
    for rule in ("train_gan", "fig1", "fig7", "fig9", "keypoint_coverage"):
        assert rule in output
    # The preset replaces the demo's config.yaml rather than merging into it: DSFD trains on every method
    # at the paper's points, not on the demo's reduced list for 100 iterations. (config.yaml is copied beside
    # the run, as it lies beside a run started in the repository.)
    shutil.copy(PROJECT_ROOT / "config.yaml", tmp_path / "config.yaml")
    fig4 = _snakemake(tmp_path, config, "--dry-run", "results/figures/fig4_dsfd.png", timeout=300)
    assert fig4.returncode == 0, fig4.stderr[-3000:]
    assert "results/models/dsfd/pixelate/iter_60000.pt" in fig4.stdout and "iter_100.pt" not in fig4.stdout


def test_per_detector_methods_and_iterations(tmp_path: Path) -> None:
    """A detector may run fewer methods and its own iteration points; Table II's detector must run them all."""
    config = load_test_config("tiny")
    config["detectors"]["dsfd"] = {"methods": ["original", "blackout"], "iterations": [3, 5]}
    result = _snakemake(tmp_path, config, "--dry-run", "results/figures/fig6_dsfd.png")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "results/models/dsfd/blackout/iter_5.pt" in output and "results/models/dsfd/original/iter_3.pt" in output
    assert "results/models/dsfd/deepprivacy" not in output and "iter_4.pt" not in output
    config["privacy"]["detector"] = "dsfd"
    refused = _snakemake(tmp_path, config, "--dry-run")
    assert refused.returncode != 0 and "must list every method" in refused.stdout + refused.stderr


def test_one_figure_builds_only_what_it_needs(tmp_path: Path) -> None:
    config = load_test_config("tiny")
    config["detectors"]["dsfd"] = {}
    result = _snakemake(tmp_path, config, "--dry-run", "results/figures/fig4_faster_rcnn.png")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "detector=faster_rcnn" in output
    assert "detector=dsfd" not in output
    assert "rule reid:" not in output and "rule fig6:" not in output


def _dry_run_jobs(output: str) -> dict[str, int]:
    """The rules a dry run would run and how many jobs of each, from its "Job stats" table ({} when nothing to do)."""
    lines = output.splitlines()
    if "Job stats:" not in lines:
        return {}
    jobs = {}
    for line in lines[lines.index("Job stats:") + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def test_dry_run_job_table_lists_every_rule_of_a_fresh_run(tmp_path: Path) -> None:
    """The job-table reader the changed-branch check relies on: a fresh tiny run lists the GAN jobs too."""
    result = _snakemake(tmp_path, load_test_config("tiny"), "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _dry_run_jobs(result.stdout + result.stderr)
    assert jobs["train_gan"] == 3 and jobs["gan_synthetic_set"] == 1  # deepprivacy on synth at 2 and 4, on synth_few at 4
    assert jobs["anonymize_train"] == 5 and jobs["all"] == 1 and len(jobs) > 20


def _rule_inputs(output: str, rule: str) -> list[str]:
    """The inputs of the first ``rule`` job in a dry run's output."""
    lines = output.splitlines()
    start = lines.index(f"rule {rule}:")
    line = next(line for line in lines[start:] if line.strip().startswith("input:"))
    return line.split("input:", 1)[1].strip().split(", ")


def test_table2_points_include_the_gan_variants_at_one_detector_iteration(tmp_path: Path) -> None:
    """Table II correlates every anonymized dataset, the Fig. 7 / Fig. 9 GAN checkpoints too: their image metrics
    are in the DAG (sampled with privacy.metrics.seed), and every mAP is read at gans.detector_iteration."""
    config = load_test_config("tiny")
    config["gans"]["detector_iteration"] = 2
    config["privacy"]["metrics"]["seed"] = 5
    result = _snakemake(tmp_path, config, "--dry-run", "--printshellcmds", "results/tables/table2_metric_correlation.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    datasets = ["blackout", "deepprivacy", "deepprivacy-synth-2", "deepprivacy-synth_few-4"]
    for dataset in datasets:
        assert f"output: results/metrics/{dataset}.json" in output
    assert "results/metrics/original.json" not in output
    inputs = _rule_inputs(output, "table2")
    assert [path for path in inputs if path.startswith("results/eval/")] == [f"results/eval/faster_rcnn/{name}/iter_2.json" for name in datasets]
    assert "--ap-iterations 2" in output and "--gan-methods deepprivacy deepprivacy-synth-2 deepprivacy-synth_few-4 " in output
    assert output.count("--seed 5 ") == len(datasets)  # one image_metrics job per dataset, each with the configured seed


@pytest.mark.slow
def test_whole_dag_on_a_tiny_config(tmp_path: Path) -> None:
    """The demo DAG end to end on a tiny config; then a parameter change re-runs only its branch."""
    result = _snakemake(tmp_path, load_test_config("tiny"), "--cores", "2")
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    results = tmp_path / "results"
    for target in (
        "figures/fig4_faster_rcnn.png",
        "figures/fig6_faster_rcnn.png",
        "figures/privacy_utility_faster_rcnn.png",
        "figures/det_naive.png",
        "figures/det_reverse.png",
        "figures/det_parrot.png",
        "tables/table2_metric_correlation.csv",
        "tables/reid.csv",
        "figures/fig1_examples.png",
        "figures/keypoint_coverage.png",
        "figures/fig7_faster_rcnn.png",
        "figures/fig9_faster_rcnn.png",
        "figures/detectability_faster_rcnn.png",
        "figures/detectability_pretrained.png",
        "figures/face_sizes.png",
    ):
        assert (results / target).stat().st_size > 0, target
    fig4 = pd.read_csv(results / "figures" / "fig4_faster_rcnn.csv")
    assert sorted(fig4["method"]) == ["blackout", "deepprivacy", "original"]
    # Fig. 9's last point is the Fig. 4 checkpoint: its dataset is reused, not made twice.
    assert sorted(p.name for p in (results / "anonymized").iterdir()) == [
        "blackout",
        "deepprivacy",
        "deepprivacy-synth-2",
        "deepprivacy-synth_few-4",
        "original",
    ]
    assert sorted(pd.read_csv(results / "figures" / "fig9_faster_rcnn.csv")["iterations"]) == [2, 4]
    assert list(pd.read_csv(results / "figures" / "fig7_faster_rcnn.csv")["label"]) == ["original", "synth_few", "synth"]
    gan_log = (results / "gans" / "deepprivacy" / "synth" / "train_log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in gan_log[1:]] == [1, 2, 3, 4]  # the 4-iteration job resumed the 2-iteration one
    assert fig4[["easy", "medium", "hard"]].apply(lambda column: column.between(0, 1)).all().all()
    fig6 = pd.read_csv(results / "figures" / "fig6_faster_rcnn.csv")
    assert sorted(set(fig6["iterations"])) == [2, 4]
    detectability = pd.read_csv(results / "figures" / "detectability_faster_rcnn.csv")
    assert list(detectability["method"]) == ["original", "blackout", "deepprivacy"]
    # The original row is the Fig. 4 evaluation of the same checkpoint on the untouched images.
    original = detectability.set_index("method").loc["original"]
    assert original["easy"] == fig4.set_index("method").loc["original", "easy"]
    assert (results / "anonymized_val" / "blackout" / "manifest.json").is_file()
    pretrained = pd.read_csv(results / "figures" / "detectability_pretrained.csv")
    assert set(pretrained["detector"]) == {"centerface"} and list(pretrained["method"]) == ["original", "blackout", "deepprivacy"]
    # The 4-iteration detector job continued the 2-iteration one's state (one run, two jobs).
    train_log = (results / "logs" / "train" / "faster_rcnn" / "original" / "iter_4.log").read_text()
    assert "resuming from" in train_log
    for method in ("original", "blackout"):
        manifest = json.loads((results / "anonymized" / method / "manifest.json").read_text())
        assert manifest["method"] == method
    reid = pd.read_csv(results / "tables" / "reid.csv")
    assert set(reid["scenario"]) == {"naive", "reverse", "parrot"}

    # Only the blackout branch is out of date after changing one of its parameters.
    changed = load_test_config("tiny")
    changed["anonymize"]["methods"]["blackout"] = {"strength": 50}
    dry = _snakemake(tmp_path, changed, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    output = dry.stdout + dry.stderr
    assert "method=blackout" in output
    assert "method=original" not in output
    jobs = _dry_run_jobs(output)
    assert jobs.get("anonymize_train") == 1 and jobs.get("train_detector", 0) >= 1, f"the blackout branch is not re-run: {jobs}"
    # The GANs do not depend on the blackout parameters: no GAN is retrained, no GAN dataset re-made.
    gan_jobs = {rule: count for rule, count in jobs.items() if rule in ("train_gan", "gan_synthetic_set")}
    assert gan_jobs == {}, f"a blackout change re-runs GAN jobs: {gan_jobs}"
    assert "rule train_gan:" not in output and "gan=deepprivacy" not in output
    shutil.rmtree(tmp_path / ".snakemake", ignore_errors=True)


SHARED_WIDER = PROJECT_ROOT.parent / "shared" / "data" / "wider_face"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_WIDER / "ground_truth").is_dir(), reason="../shared/data/wider_face is absent (real WIDER val images)")
def test_real_val_preset_scores_anonymizers_with_pretrained_detectors(tmp_path: Path) -> None:
    """config/real_val.yaml end to end on the real fixtures (fewer methods and one detector, for time): no training,
    the 115 present images scored and the 3,111 absent ones not counted."""
    config = yaml.safe_load((PROJECT_ROOT / "config" / "real_val.yaml").read_text())
    config["dataset"]["wider"] = {"root": str(SHARED_WIDER), "ground_truth": str(SHARED_WIDER / "ground_truth")}
    config["anonymize"]["methods"] = {"original": {}, "blackout": {}}
    config["detectability"]["pretrained"] = ["centerface"]
    config["privacy"]["metrics"] = {"names": ["l1", "l2", "ssim"], "max_faces": 10, "split": "val"}
    config["privacy"]["reid"]["synthetic"] = {"identities": 3, "photos": 2, "seed": 0}
    result = _snakemake(tmp_path, config, "--cores", "2", timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    results = tmp_path / "results"  # --directory (the test's) takes precedence over the preset's workdir
    assert not (results / "models").exists() and not (results / "anonymized").exists()
    table = pd.read_csv(results / "figures" / "detectability_pretrained.csv").set_index("method")
    assert table.loc["original", "easy"] >= 0.7
    assert table.loc["blackout", "easy"] <= table.loc["original", "easy"] / 2
    manifest = json.loads((results / "anonymized_val" / "blackout" / "manifest.json").read_text())
    assert manifest["counts"]["images_written"] == 115
    for target in ("figures/fig1_examples.png", "figures/face_sizes.png", "tables/reid.csv", "metrics/blackout.json"):
        assert (results / target).stat().st_size > 0, target
