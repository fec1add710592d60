"""A training run's log: ``OUT/log.jsonl`` (one JSON record per line) and its console lines.

Every loop averages its losses over windows of ``every`` steps (a record ``{"step", <loss names>,
"minutes"}`` and a line ``step N/STEPS loss L (M min)`` at the end of each) and writes its held-out
scores as records of their own; ``plot_distill_log.py`` and the docs' training logs read these files.
A loss that is not finite ends the run at once with an error, before a checkpoint can keep it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class TrainingLog:
    """Open (appending, so a resumed run continues its file) until ``close``."""

    def __init__(self, folder: Path, steps: int, every: int, echo: Callable[[str], None]) -> None:
        self.file = (Path(folder) / "log.jsonl").open("a")
        self.steps, self.every, self.echo = steps, every, echo
        self.start = time.perf_counter()  # what ``save_or_stop`` measures the run's minutes from
        self.sums: dict[str, float] = {}
        self.seen = 0

    def losses(self, step: int, values: Mapping[str, float]) -> dict[str, float]:
        """Add step ``step``'s losses; returns their means over the window so far (before a record
        resets it). Raises ``FloatingPointError`` (and closes the file) on a loss that is not finite."""
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            self.close()
            raise FloatingPointError(f"training diverged at step {step} ({', '.join(bad)} not finite)")
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.seen += 1
        means = {name: total / self.seen for name, total in self.sums.items()}
        if step % self.every == 0:
            minutes = (time.perf_counter() - self.start) / 60
            self.write({"step": step, **means, "minutes": minutes})
            shown = " ".join(f"{name} {mean:.5f}" for name, mean in means.items())
            self.echo(f"step {step}/{self.steps} {shown} ({minutes:.1f} min)")
            self.sums, self.seen = {}, 0
        return means

    def loss(self, step: int, value: float) -> float:
        """``losses`` for a loop with one loss, named ``loss``."""
        return self.losses(step, {"loss": value})["loss"]

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
