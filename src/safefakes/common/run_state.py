"""The machinery every training run shares (detectors and GANs): device choice, seeding, random-state capture
and restore, atomic checkpoint payloads, the run's fingerprint, the loss log, and saving and resuming the
resumable state, so a killed run restarted with the same arguments continues where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_bytes, atomic_write_text

LOGGER = logging.getLogger(__name__)

STATE_FORMAT = "safefakes-train-state/1"
STATE_FILE_NAME = "state.pt"
LOG_FILE_NAME = "train_log.csv"


def run_fingerprint(identity: Mapping[str, Any]) -> str:
    """Identifies a training run from what defines it (data digest, hyper-parameters, seed, ...); a state with
    another fingerprint belongs to another run and is not resumed."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


def checkpoint_name(iteration: int) -> str:
    """File name of the checkpoint written after ``iteration`` iterations."""
    return f"iter_{iteration}.pt"


def select_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``; refuses CUDA when there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SafefakesError(f"--device {name} requested but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise SafefakesError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU and CUDA) random states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Undo :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_torch_payload(path: Path, payload: Mapping[str, Any]) -> None:
    """Serialize ``payload`` with ``torch.save`` and write it atomically."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_torch_payload(path: str | Path, expected_format: str, what: str) -> dict[str, Any]:
    """Load a checkpoint dict written by :func:`write_torch_payload`; a clear error for a missing,
    damaged or foreign file (``what`` names the kind of checkpoint in messages)."""
    path = Path(path)
    if not path.is_file():
        raise SafefakesError(f"{what} not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise SafefakesError(f"cannot read {what} {path}: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise SafefakesError(f"{path} is not a safefakes {what}")
    return payload


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as contiguous CPU tensors (independent of device and memory format)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


class LossLog:
    """Rows of the CSV loss log, rewritten atomically so it always matches the last saved state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def load_until(self, iteration: int) -> None:
        """Keep the rows of an existing log up to ``iteration`` (the resumed state)."""
        if not self.path.is_file() or iteration == 0:
            return
        with open(self.path, newline="", encoding="utf-8") as handle:
            self.rows = [row for row in csv.DictReader(handle) if int(row["iteration"]) <= iteration]

    def append(self, row: dict[str, Any]) -> None:
        """Add one row."""
        self.rows.append(row)

    def write(self) -> None:
        """Write all rows atomically."""
        columns: list[str] = []
        for row in self.rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


def save_state(path: Path, training_state: Any, iteration: int, fingerprint: str, state_format: str = STATE_FORMAT) -> None:
    """Write the resumable state atomically: every field of the dataclass ``training_state`` (each with a
    ``state_dict``; a field set to None is left out), the iteration, the run's fingerprint and the random number generators."""
    payload = {"format": state_format, "fingerprint": fingerprint, "iteration": iteration, "rng": capture_rng_state()}
    parts = {field.name: getattr(training_state, field.name) for field in dataclasses.fields(training_state)}
    payload.update({name: part.state_dict() for name, part in parts.items() if part is not None})
    write_torch_payload(path, payload)


def try_resume(
    path: Path,
    training_state: Any,
    fingerprint: str,
    device: torch.device,
    checkpoints: Mapping[int, Path],
    state_format: str = STATE_FORMAT,
    stop_iteration: int | None = None,
) -> int:
    """Load the state at ``path`` into the dataclass ``training_state`` and return its iteration; 0 when there is none to resume.

    A state is not resumed when it belongs to another run, when a checkpoint it should already
    have written (``checkpoints``: iteration -> path) is missing, or when it lies past ``stop_iteration``
    (a call that stops earlier than the saved run got must start again to write its checkpoint).
    """
    if not path.is_file():
        return 0
    payload = torch.load(path, map_location=device, weights_only=False)
    if payload.get("format") != state_format or payload.get("fingerprint") != fingerprint:
        LOGGER.warning("ignoring %s: it belongs to another run (other data, hyper-parameters, seed or length)", path)
        return 0
    if stop_iteration is not None and payload["iteration"] > stop_iteration:
        LOGGER.warning("ignoring %s: it is at iteration %d, past this call's last checkpoint %d", path, payload["iteration"], stop_iteration)
        return 0
    missing = [str(p) for n, p in checkpoints.items() if n <= payload["iteration"] and not p.is_file()]
    if missing:
        LOGGER.warning("ignoring %s: checkpoints it already wrote are missing (%s); training from the start", path, ", ".join(missing))
        return 0
    for field in dataclasses.fields(training_state):
        part = getattr(training_state, field.name)
        if part is not None:
            part.load_state_dict(payload[field.name])
    rng = payload["rng"]
    rng["torch"] = rng["torch"].cpu()
    if "cuda" in rng:
        rng["cuda"] = [s.cpu() for s in rng["cuda"]]
    restore_rng_state(rng)
    LOGGER.info("resuming from %s at iteration %d", path, payload["iteration"])
    return int(payload["iteration"])


def check_iterations(requested: Sequence[int]) -> tuple[int, ...]:
    """The requested checkpoint iterations, sorted and deduplicated; non-positive ones are an error."""
    iterations = tuple(sorted(set(int(n) for n in requested)))
    if any(n < 1 for n in iterations):
        raise SafefakesError(f"--iterations must be positive, got {list(requested)}")
    return iterations
