"""The workflow through a live one-node SLURM cluster (fake GPUs), against a local run of the same config.

Needs root and apt-get (slurm-wlm, munge); skipped with the reason otherwise. The cluster comes from
tests/slurm_local.py, which stops exactly the daemons it started, also when this test fails.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import slurm_local
import torch
import yaml
from test_workflow import PROJECT_ROOT, SNAKEFILE, _snakemake, load_test_config

pytestmark = pytest.mark.slow

SLURM_PROFILE = PROJECT_ROOT / "workflow" / "profiles" / "slurm"
REPORT_CAPTIONS = PROJECT_ROOT / "workflow" / "report"
PARTITION = "safefakes_test"
FAKE_GPUS = 2
#: Rules that declare `gpu: 1` and must reach sbatch with --gpus.
GPU_RULES = {"train_detector", "predict_val"}
#: Report captions of figures that exist only when the config has GAN methods or GAN figures.
GAN_ONLY_CAPTIONS = ("coverage.rst", "fig7.rst", "fig9.rst")
#: Captions of figures the micro run leaves out: its config has no GANs and no detectability section.
NOT_IN_MICRO_RUN = (*GAN_ONLY_CAPTIONS, "detectability.rst")
#: Rules Snakemake runs itself (no job): the default target.
LOCAL_RULES = {"all"}
SNAKEMAKE_TIMEOUT_S = 480
CONCURRENT_SLURM_JOBS = 4
#: Same thread counts in both runs: torch's CPU reductions may depend on the number of threads.
THREADS = ("train_detector=1", "predict_val=1", "anonymize_train=1")
#: The profile's cluster-sized requests, scaled down to the 2-core test node.
SMALL_RESOURCES = (
    "train_detector:cpus_per_task=1",
    "predict_val:cpus_per_task=1",
    "anonymize_train:cpus_per_task=1",
    "train_detector:mem_mb=2000",
    "predict_val:mem_mb=2000",
    "image_metrics:mem_mb=2000",
)
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S*/rule_([^/]+)/\S*)\)")


def compared_outputs(config: dict) -> list[str]:
    """The files of both runs that must be identical: each detector's evaluation JSON and PR curve."""
    iterations = max(config["training"]["iterations"])
    return [
        f"results/eval/{detector}/{method}/iter_{iterations}{suffix}"
        for detector in config["detectors"]
        for method in config["anonymize"]["methods"]
        for suffix in (".json", "_pr.csv")
    ]


def run_through_slurm(workdir: Path, config: dict, cluster: slurm_local.LocalCluster) -> subprocess.CompletedProcess[str]:
    """snakemake --executor slurm with our profile, stopped with SIGINT (as a hung run ignores SIGTERM)."""
    config_path = workdir / "test_config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    bin_dir = Path(sys.executable).parent
    env = {**cluster.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "SAFEFAKES_NO_PROGRESS": "1"}
    command = [
        "timeout",
        "-s",
        "INT",
        "-k",
        "10",
        str(SNAKEMAKE_TIMEOUT_S),
        str(bin_dir / "snakemake"),
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(config_path),
        "--workflow-profile",
        str(SLURM_PROFILE),
        "--executor",
        "slurm",
        "--jobs",
        str(CONCURRENT_SLURM_JOBS),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        "--default-resources",
        f"slurm_partition={cluster.partition}",
        "--set-threads",
        *THREADS,
        "--set-resources",
        *SMALL_RESOURCES,
    ]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT_S + 30)


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (rule -> number of jobs), without the total."""
    block = output.split("Job stats:", 1)[1]
    stats = {}
    for line in block.splitlines()[3:]:
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            break
        stats[fields[0]] = int(fields[1])
    stats.pop("total", None)
    return stats


def summary_rows(workdir: Path, config: dict) -> list[dict[str, str]]:
    """`snakemake --summary`: one row per output file of the DAG."""
    result = _snakemake(workdir, config, "--summary", "--workflow-profile", "none", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.count("\t") >= 5]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def assert_same_weights(first: Path, second: Path) -> None:
    """Two checkpoints hold bit-identical tensors."""
    a = torch.load(first, map_location="cpu", weights_only=False)["model"]
    b = torch.load(second, map_location="cpu", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_tree(first: Path, second: Path) -> None:
    """Two folders hold the same files with the same bytes."""
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_tiny_dag_through_live_slurm_equals_local_run(tmp_path: Path) -> None:
    reason = slurm_local.unavailable_reason()
    if reason:
        pytest.skip(reason)
    config = load_test_config("slurm_micro")
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    local_dir.mkdir()
    slurm_dir.mkdir()
    compared = compared_outputs(config)

    with ExitStack() as stack, concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        # The local reference builds only the compared files, alongside the cluster run (it mostly polls).
        local_run = pool.submit(_snakemake, local_dir, config, "--cores", "1", *compared, "--workflow-profile", "none", "--set-threads", *THREADS)
        try:
            cluster = stack.enter_context(slurm_local.running_cluster(PARTITION, FAKE_GPUS))
        except slurm_local.SlurmUnavailable as error:
            local_run.result()
            pytest.skip(f"local SLURM cluster unavailable: {error}")
        result = run_through_slurm(slurm_dir, config, cluster)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:] + "\n" + cluster.logs()

        # Every job of the DAG but the local target went through sbatch, and finished there.
        submissions = [(rule, slurm_id, Path(log)) for _, slurm_id, log, rule in SUBMITTED.findall(output)]
        expected = {rule: count for rule, count in job_stats(output).items() if rule not in LOCAL_RULES}
        submitted: dict[str, int] = {}
        for rule, _, _ in submissions:
            submitted[rule] = submitted.get(rule, 0) + 1
        assert submitted == expected
        assert GPU_RULES <= set(submitted)
        for rule, slurm_id, log in submissions:
            record = cluster.job_record(slurm_id)
            assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", (rule, record)
            assert record["Partition"] == cluster.partition
            gpus_requested = "gpu" in record.get("TresPerJob", "")
            assert gpus_requested == (rule in GPU_RULES), (rule, record.get("TresPerJob"))
            assert log.is_file() and log.name == f"{slurm_id}.log", log
        local_result = local_run.result()
    assert all(daemon.process.poll() is not None for daemon in cluster.daemons), "a daemon outlived the cluster"
    assert local_result.returncode == 0, (local_result.stdout + local_result.stderr)[-4000:]

    # Every output of the DAG exists and is up to date; each was made by a submitted rule.
    rows = summary_rows(slurm_dir, config)
    assert rows
    for row in rows:
        assert (slurm_dir / row["output_file"]).exists(), row
        assert row["status"] == "ok" and row["plan"] == "no update", row
    assert {row["rule"] for row in rows} == set(expected)

    # Same numbers as the local run: evaluation JSONs, PR curves, predictions and weights.
    for name in compared:
        assert (slurm_dir / name).read_bytes() == (local_dir / name).read_bytes(), name
        if name.endswith(".json"):
            assert json.loads((slurm_dir / name).read_text()) == json.loads((local_dir / name).read_text())
    for detector in config["detectors"]:
        for method in config["anonymize"]["methods"]:
            for iterations in config["training"]["iterations"]:
                assert_same_tree(
                    slurm_dir / f"results/predictions/{detector}/{method}/iter_{iterations}",
                    local_dir / f"results/predictions/{detector}/{method}/iter_{iterations}",
                )
                assert_same_weights(
                    slurm_dir / f"results/models/{detector}/{method}/iter_{iterations}.pt",
                    local_dir / f"results/models/{detector}/{method}/iter_{iterations}.pt",
                )

    # The HTML report of the finished run holds every captioned figure and table (but the GAN-only and
    # detectability ones: this run has neither).
    report = _snakemake(slurm_dir, config, "--report", "report.html", "--workflow-profile", "none", timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (slurm_dir / "report.html").read_text(errors="replace")
    for caption in sorted(set(REPORT_CAPTIONS.glob("*.rst")) - {REPORT_CAPTIONS / name for name in NOT_IN_MICRO_RUN}):
        title = caption.read_text().strip().splitlines()[0].strip()
        assert title[:40] in html, caption.name


def test_cluster_stops_exactly_its_daemons_when_the_body_fails() -> None:
    reason = slurm_local.unavailable_reason()
    if reason:
        pytest.skip(reason)
    link_existed = slurm_local.SYSTEM_SLURM_CONF.is_symlink() or slurm_local.SYSTEM_SLURM_CONF.exists()
    started: list[slurm_local.Daemon] = []
    with pytest.raises(RuntimeError, match="test body failed"):
        try:
            with slurm_local.running_cluster(PARTITION, FAKE_GPUS) as cluster:
                started = list(cluster.daemons)
                root = cluster.layout.root
                assert [daemon.name for daemon in started] == ["munged", "slurmctld", "slurmd"]
                assert all(daemon.is_ours() for daemon in started)
                for daemon in started:
                    assert int(cluster.layout.pid_file(daemon.name).read_text()) == daemon.pid
                assert "Gres=gpu:2" in cluster.client("scontrol", "show", "node", "localhost").stdout
                raise RuntimeError("test body failed")
        except slurm_local.SlurmUnavailable as error:
            pytest.skip(f"local SLURM cluster unavailable: {error}")
    assert started and all(daemon.process.poll() is not None for daemon in started)
    assert not root.exists()
    assert (slurm_local.SYSTEM_SLURM_CONF.is_symlink() or slurm_local.SYSTEM_SLURM_CONF.exists()) == link_existed
