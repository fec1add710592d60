"""A training run's log: ``OUT/log.jsonl`` (one JSON record per line) and its console lines.

Every loop averages its loss over windows of ``every`` steps (a record ``{"step", "loss", "minutes"}``
and a line ``step N/STEPS loss L (M min)`` at the end of each) and writes its held-out scores as
records of their own; ``plot_distill_log.py`` and the docs' training logs read these files.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class TrainingLog:
    """Open (appending, so a resumed run continues its file) until ``close``."""

    def __init__(self, folder: Path, steps: int, every: int, echo: Callable[[str], None]) -> None:
        self.file = (Path(folder) / "log.jsonl").open("a")
        self.steps, self.every, self.echo = steps, every, echo
        self.start = time.perf_counter()  # what ``save_or_stop`` measures the run's minutes from
        self.window, self.seen = 0.0, 0

    def loss(self, step: int, value: float) -> float:
        """Add step ``step``'s loss; returns the mean over the window so far (before a record resets it)."""
        self.window, self.seen = self.window + value, self.seen + 1
        mean = self.window / self.seen
        if step % self.every == 0:
            minutes = (time.perf_counter() - self.start) / 60
            self.write({"step": step, "loss": mean, "minutes": minutes})
            self.echo(f"step {step}/{self.steps} loss {mean:.5f} ({minutes:.1f} min)")
            self.window, self.seen = 0.0, 0
        return mean

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        """Close the file; a loss that is no longer finite ends the run with an error."""
        self.file.close()
        if not math.isfinite(self.window):
            raise FloatingPointError("training diverged (loss is not finite)")
