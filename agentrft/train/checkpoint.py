"""Checkpoints: written atomically (a temp folder renamed into place), so a crash mid-write
never leaves a half checkpoint that `--resume` would pick up.

    run_dir/checkpoints/step_000004/   adapter or weights, optimizer.pt, rng.pt, state.json
    run_dir/checkpoints/LATEST         the name of the newest complete checkpoint
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentrft.engines.base import Engine
from agentrft.errors import CheckpointError


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(run_dir: Path, step: int, policy, *, engine: Engine,
                    state: dict[str, Any]) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_weights(tmp, step=step)
    torch.save({**rng_state(), "engine": engine.rng_state()}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (root / "LATEST.tmp").write_text(final.name)
    (root / "LATEST.tmp").replace(root / "LATEST")
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "LATEST"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise CheckpointError(f"{pointer} names {path.name}, which is incomplete or missing")
    return path


def load_checkpoint(path: Path, policy, *, engine: Engine) -> dict[str, Any]:
    policy.load_weights(path)
    rng = torch.load(path / "rng.pt", weights_only=False)
    set_rng_state(rng)
    engine.set_rng_state(rng["engine"])
    return json.loads((path / "state.json").read_text())
