"""A real one-node SLURM cluster for tests: Debian's slurm-wlm and munge, run as root without systemd.

:func:`unavailable_reason` installs the packages with apt-get when they are missing and says why a
cluster cannot be had (not root, no apt-get, install failed). :func:`running_cluster` writes every
configuration file into a private temporary folder, starts munged, slurmctld and slurmd in the
background (each writes a pid file there), waits until the node is ``idle`` and, on the way out, also
when the test fails, cancels the partition's jobs and stops exactly the daemons it started: by pid,
after checking ``/proc/PID/comm``. ``/etc/slurm/slurm.conf`` (which the executor plugin's job step
needs, because it drops ``SLURM_CONF`` before its inner ``srun``) is linked to the private config only
when absent, and removed only when it still points into the private folder.
Facts behind the settings: ../shared/docs/slurm-local.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Debian packages of the cluster and the programs the tests need from them.
APT_PACKAGES = ("slurm-wlm", "munge")
REQUIRED_PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "scontrol")
APT_TIMEOUT_S = 600
#: The config the job step's inner ``srun`` reads (it drops SLURM_CONF).
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")
#: Harmless character devices standing in for GPUs (Slurm 22.05 drops a GPU without a device file).
FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random")
#: Share of the available memory the node declares (slurmd drains a node that declares more than it has).
MEMORY_SHARE = 0.9
#: Name prefix of the private folders (under the system temp folder) holding a cluster's files.
PRIVATE_PREFIX = "safefakes-slurm-"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.2


class SlurmUnavailable(RuntimeError):
    """A local cluster cannot be started here (the reason is the message)."""


def _missing_programs() -> list[str]:
    return [name for name in REQUIRED_PROGRAMS if shutil.which(name) is None]


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)


def unavailable_reason() -> str | None:
    """None when a local cluster can be started; otherwise why not. Installs missing packages with apt-get."""
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a local SLURM cluster needs root (SlurmUser=root, apt-get install)"
    if not _missing_programs():
        return None
    if shutil.which("apt-get") is None:
        return f"SLURM programs missing ({', '.join(_missing_programs())}) and apt-get is unavailable"
    try:
        result = _apt_get("install", "-y", "-q", *APT_PACKAGES)
        if result.returncode != 0:  # a stale package list: refresh it once and retry
            _apt_get("update", "-q")
            result = _apt_get("install", "-y", "-q", *APT_PACKAGES)
    except subprocess.TimeoutExpired:
        return f"apt-get install {' '.join(APT_PACKAGES)} timed out after {APT_TIMEOUT_S} s"
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        return f"apt-get install {' '.join(APT_PACKAGES)} failed (no network?): {' | '.join(tail)}"
    missing = _missing_programs()
    return f"still missing after apt-get install: {', '.join(missing)}" if missing else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def available_memory_mb() -> int:
    """MemAvailable of /proc/meminfo, in MB."""
    match = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    if match is None:
        raise SlurmUnavailable("cannot read MemAvailable from /proc/meminfo")
    return int(match.group(1)) // 1024


@dataclass(frozen=True)
class ClusterLayout:
    """Where a private cluster keeps its files, all under ``root``."""

    root: Path

    @property
    def slurm_conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def gres_conf(self) -> Path:
        return self.root / "etc" / "gres.conf"

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def munge_key(self) -> Path:
        return self.munge_dir / "munge.key"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def pid_file(self, daemon: str) -> Path:
        """The pid file a daemon writes."""
        return self.run_dir / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        """The log file of a daemon."""
        return self.log_dir / f"{daemon}.log"


def slurm_conf_text(layout: ClusterLayout, partition: str, cpus: int, memory_mb: int, gpus: int) -> str:
    """A minimal slurm.conf: one node ``localhost``, one default partition, no accounting, no cgroups."""
    lines = [
        "ClusterName=safefakes-test",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={layout.munge_socket}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/backfill",
        "ReturnToService=2",
        # Finished jobs stay visible to `scontrol show job` for 10 min: the test reads them (no slurmdbd).
        "MinJobAge=600",
        "MailProg=/bin/true",
        f"StateSaveLocation={layout.root / 'state'}",
        f"SlurmdSpoolDir={layout.root / 'spool'}",
        f"SlurmctldPidFile={layout.pid_file('slurmctld')}",
        f"SlurmdPidFile={layout.pid_file('slurmd')}",
        f"SlurmctldLogFile={layout.log_file('slurmctld')}",
        f"SlurmdLogFile={layout.log_file('slurmd')}",
    ]
    node = f"NodeName=localhost CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN"
    if gpus:
        lines.append("GresTypes=gpu")
        node += f" Gres=gpu:{gpus}"
    lines += [node, f"PartitionName={partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP"]
    return "\n".join(lines) + "\n"


def gres_conf_text(gpus: int) -> str:
    """gres.conf declaring ``gpus`` fake GPUs, one harmless character device each."""
    if gpus > len(FAKE_GPU_DEVICES):
        raise ValueError(f"at most {len(FAKE_GPU_DEVICES)} fake GPUs, got {gpus}")
    return "".join(f"NodeName=localhost Name=gpu File={device}\n" for device in FAKE_GPU_DEVICES[:gpus])


def write_configs(layout: ClusterLayout, partition: str, gpus: int) -> None:
    """Create the private folders, the munge key, slurm.conf and gres.conf."""
    for folder in (layout.root / "etc", layout.munge_dir, layout.run_dir, layout.log_dir, layout.root / "state", layout.root / "spool"):
        folder.mkdir(parents=True, exist_ok=True)
    # munged and the clients reach the socket through these folders: world-executable, not writable.
    for folder in (layout.root, layout.munge_dir):
        folder.chmod(0o755)
    subprocess.run(["mungekey", "-c", "-k", str(layout.munge_key)], check=True, capture_output=True, text=True)
    layout.munge_key.chmod(0o600)
    memory_mb = int(available_memory_mb() * MEMORY_SHARE)
    layout.slurm_conf.write_text(slurm_conf_text(layout, partition, os.cpu_count() or 1, memory_mb, gpus))
    layout.gres_conf.write_text(gres_conf_text(gpus))


@dataclass
class Daemon:
    """One daemon this module started: its process, and the name /proc/PID/comm must show."""

    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_ours(self) -> bool:
        """True while the pid still names our running daemon (not a reused pid, not a zombie we reaped)."""
        if self.process.poll() is not None:
            return False
        try:
            return Path(f"/proc/{self.pid}/comm").read_text().strip() == self.name
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`; only when the pid is still ours."""
        if not self.is_ours():
            self.process.poll()
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            if self.is_ours():
                os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class LocalCluster:
    """A running one-node cluster: its files, partition, client environment and daemons."""

    layout: ClusterLayout
    partition: str
    gpus: int
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM clients (sbatch, squeue, snakemake) to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.layout.slurm_conf)}

    def client(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client program against this cluster."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)

    def node_state(self) -> str:
        """``sinfo``'s state of the partition's node ('' while slurmctld does not answer)."""
        result = self.client("sinfo", "-h", "-p", self.partition, "-o", "%T")
        return result.stdout.strip() if result.returncode == 0 else ""

    def job_record(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as KEY -> VALUE (finished jobs stay visible for MinJobAge)."""
        result = self.client("scontrol", "show", "job", "--oneliner", job_id)
        if result.returncode != 0:
            raise RuntimeError(f"scontrol show job {job_id}: {result.stderr.strip()}")
        return dict(re.findall(r"(\S+?)=(\S*)", result.stdout))

    def cancel_jobs(self) -> None:
        """Cancel every job of the partition and wait (briefly) for the queue to drain."""
        self.client("scancel", "--partition", self.partition)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            queue = self.client("squeue", "-h", "-p", self.partition, "-o", "%i")
            if queue.returncode != 0 or not queue.stdout.strip():
                return
            time.sleep(POLL_S)

    def logs(self) -> str:
        """The daemons' log tails, for failure messages."""
        parts = []
        for name in ("munged", "slurmctld", "slurmd"):
            path = self.layout.log_file(name)
            if path.is_file():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)


def _start_daemon(layout: ClusterLayout, name: str, command: Sequence[str], env: Mapping[str, str]) -> Daemon:
    """Start one daemon in the foreground mode of its program, as a background child in its own session."""
    with open(layout.log_dir / f"{name}.console", "wb") as console:
        process = subprocess.Popen(list(command), env=dict(env), stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
    return Daemon(name, process)


def _wait_for(condition, what: str, cluster: LocalCluster) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if condition():
            return
        for daemon in cluster.daemons:
            if daemon.process.poll() is not None:
                raise SlurmUnavailable(f"{daemon.name} exited ({daemon.process.returncode}) before {what}\n{cluster.logs()}")
        time.sleep(POLL_S)
    raise SlurmUnavailable(f"timed out after {READY_TIMEOUT_S} s waiting for {what}\n{cluster.logs()}")


def start_daemons(cluster: LocalCluster) -> None:
    """munged, then slurmctld, then slurmd; returns when the node is idle."""
    layout = cluster.layout
    env = cluster.env
    cluster.daemons.append(
        _start_daemon(
            layout,
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={layout.munge_socket}",
                f"--key-file={layout.munge_key}",
                f"--pid-file={layout.pid_file('munged')}",
                f"--log-file={layout.log_file('munged')}",
                f"--seed-file={layout.munge_dir / 'munged.seed'}",
            ],
            env,
        )
    )
    _wait_for(layout.munge_socket.exists, "the munge socket", cluster)
    cluster.daemons.append(_start_daemon(layout, "slurmctld", ["slurmctld", "-D", "-i", "-f", str(layout.slurm_conf)], env))
    _wait_for(lambda: cluster.client("sinfo", "-h").returncode == 0, "slurmctld to answer", cluster)
    cluster.daemons.append(_start_daemon(layout, "slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(layout.slurm_conf)], env))
    _wait_for(lambda: cluster.node_state() == "idle", "the node to be idle", cluster)


def stop_daemons(cluster: LocalCluster) -> None:
    """Stop the daemons this module started, newest first, each by its pid after checking /proc/PID/comm."""
    for daemon in reversed(cluster.daemons):
        daemon.stop()


@contextlib.contextmanager
def _system_config_link(target: Path) -> Iterator[None]:
    """Link /etc/slurm/slurm.conf to ``target`` when absent; remove the link afterwards if it still points there."""
    if SYSTEM_SLURM_CONF.is_symlink() and not SYSTEM_SLURM_CONF.exists() and PRIVATE_PREFIX in os.readlink(SYSTEM_SLURM_CONF):
        SYSTEM_SLURM_CONF.unlink()  # left dangling by a run of this module that was killed before cleaning up
    if SYSTEM_SLURM_CONF.exists() or SYSTEM_SLURM_CONF.is_symlink():
        if SYSTEM_SLURM_CONF.resolve() != target.resolve():
            raise SlurmUnavailable(f"{SYSTEM_SLURM_CONF} already exists and belongs to another cluster")
        yield
        return
    created_folder = not SYSTEM_SLURM_CONF.parent.exists()
    SYSTEM_SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_SLURM_CONF.symlink_to(target)
    try:
        yield
    finally:
        if SYSTEM_SLURM_CONF.is_symlink() and Path(os.readlink(SYSTEM_SLURM_CONF)).resolve().is_relative_to(target.parent.parent.resolve()):
            SYSTEM_SLURM_CONF.unlink()
        if created_folder:
            with contextlib.suppress(OSError):
                SYSTEM_SLURM_CONF.parent.rmdir()


@contextlib.contextmanager
def running_cluster(partition: str = "safefakes_test", gpus: int = 2, keep_files: bool = False) -> Iterator[LocalCluster]:
    """A started one-node cluster with ``gpus`` fake GPUs; everything it started is stopped on exit."""
    reason = unavailable_reason()
    if reason:
        raise SlurmUnavailable(reason)
    layout = ClusterLayout(Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX)))
    cluster = LocalCluster(layout, partition, gpus)
    try:
        write_configs(layout, partition, gpus)
        with _system_config_link(layout.slurm_conf):
            try:
                start_daemons(cluster)
                yield cluster
            finally:
                if any(daemon.name == "slurmctld" and daemon.is_ours() for daemon in cluster.daemons):
                    cluster.cancel_jobs()
                stop_daemons(cluster)
    finally:
        if not keep_files:
            shutil.rmtree(layout.root, ignore_errors=True)
