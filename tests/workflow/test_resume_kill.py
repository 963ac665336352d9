"""Preemption: `safefakes train` killed with SIGKILL and started again ends with the weights of an uninterrupted run.

The training state must live where Snakemake does not delete it when a job fails (not an output of any
rule), and the SLURM profile must resubmit a failed (preempted) job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_workflow import PROJECT_ROOT, _snakemake, load_test_config

SLURM_PROFILE = PROJECT_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
DETECTOR = "faster_rcnn"
IMAGE_SIZE = 128
TOTAL_ITERATIONS = 6
CHECKPOINT_ITERATIONS = (3, TOTAL_ITERATIONS)
STATE_EVERY = 2
SEED = 0
KILL_TIMEOUT_S = 240
#: The demo's slim Faster R-CNN on 128-px images; a state every 2 iterations.
HPARAMS = {
    "model": {
        "pretrained": "none",  # the slim widths fit no ImageNet file; training refuses a missing one
        "min_size": IMAGE_SIZE,
        "max_size": IMAGE_SIZE,
        "width_per_group": 16,
        "fpn_channels": 32,
        "box_representation_size": 64,
        "rpn_pre_nms_top_n_train": 100,
        "rpn_post_nms_top_n_train": 50,
        "rpn_pre_nms_top_n_test": 100,
        "rpn_post_nms_top_n_test": 50,
        "box_batch_size_per_image": 32,
        "box_detections_per_img": 50,
    },
    "augment": {"output_size": IMAGE_SIZE},
    "train": {
        "batch_size": 2,
        "num_workers": 0,
        "state_every": STATE_EVERY,
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.0001},
        "schedule": {"name": "constant"},
    },
}


def _env() -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "SAFEFAKES_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def train_command(root: Path, out: Path) -> list[str]:
    """`safefakes train` as the train_detector rule runs it, writing into ``out``."""
    return [
        str(Path(sys.executable).parent / "safefakes"),
        "train",
        "--detector",
        DETECTOR,
        "--wider-root",
        str(root),
        "--split",
        "train",
        "--hparams",
        json.dumps(HPARAMS),
        "--iterations",
        *map(str, CHECKPOINT_ITERATIONS),
        "--checkpoints",
        str(out / "models"),
        "--state-dir",
        str(out / "train_state"),
        "--seed",
        str(SEED),
        "--device",
        "cpu",
    ]


def state_iteration(state_dir: Path) -> int | None:
    """The iteration of the saved training state, or None while there is none."""
    path = state_dir / "state.pt"
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=False)["iteration"])


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    """The model tensors of the last checkpoint."""
    return torch.load(out / "models" / f"iter_{TOTAL_ITERATIONS}.pt", map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume") / "synthetic"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "safefakes"),
            "synth",
            "--out",
            str(root),
            "--images",
            "6",
            "--val-images",
            "2",
            "--image-width",
            str(IMAGE_SIZE),
            "--seed",
            "3",
        ],
        env=_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return root


@pytest.mark.slow
def test_sigkilled_training_resumes_to_identical_weights(synth_root: Path, tmp_path: Path) -> None:
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = subprocess.Popen(train_command(synth_root, reference_dir), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = subprocess.Popen(train_command(synth_root, killed_dir), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while state_iteration(killed_dir / "train_state") is None:
            assert victim.poll() is None, "training ended before writing a state"
            assert time.monotonic() < deadline, "no training state written in time"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    killed_at = state_iteration(killed_dir / "train_state")
    assert victim.returncode == -signal.SIGKILL
    assert killed_at is not None and killed_at < TOTAL_ITERATIONS
    assert not (killed_dir / "models" / f"iter_{TOTAL_ITERATIONS}.pt").exists(), "the kill came after the end of training"

    resumed = subprocess.run(train_command(synth_root, killed_dir), env=_env(), capture_output=True, text=True, timeout=KILL_TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {killed_dir / 'train_state' / 'state.pt'} at iteration {killed_at}" in resumed.stderr
    _, reference_err = reference.communicate(timeout=KILL_TIMEOUT_S)
    assert reference.returncode == 0, reference_err[-3000:]

    expected, actual = final_weights(reference_dir), final_weights(killed_dir)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    log_rows = (killed_dir / "models" / "train_log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in log_rows] == list(range(1, TOTAL_ITERATIONS + 1))


def _dry_run_jobs(tmp_path: Path) -> str:
    result = _snakemake(tmp_path, load_test_config("tiny"), "--dry-run", "--printshellcmds", "--forceall", "--workflow-profile", "none")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_training_state_is_no_rule_output(tmp_path: Path) -> None:
    """Snakemake deletes a failed job's outputs; the state dirs lie under results/train_state (detectors) and
    results/gan_state (GANs), outside all of them."""
    output = _dry_run_jobs(tmp_path)
    state_dirs = re.findall(r"--state-dir (\S+)", output)
    assert state_dirs, "no training command in the dry run"
    outputs = [path.strip() for line in re.findall(r"^\s+output: (.+)$", output, re.MULTILINE) for path in line.split(",")]
    for state_dir in state_dirs:
        assert state_dir.startswith(("results/train_state/", "results/gan_state/")), state_dir
        for path in outputs:
            assert not state_dir.startswith(path.rstrip("/") + "/") and state_dir != path, (state_dir, path)
            assert not path.startswith(state_dir.rstrip("/") + "/"), (state_dir, path)


def test_slurm_profile_resubmits_failed_jobs() -> None:
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert int(profile["retries"]) >= 1
    assert profile.get("rerun-incomplete") is True
