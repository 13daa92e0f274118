"""A one-line progress bar on stderr that appears only once a run has taken a few seconds."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: float, *, delay: float = 2.0, stream: TextIO | None = None):
        self.total, self.done, self.delay = max(total, 1e-9), 0.0, delay
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.shown = False
        self.label = ""

    def advance(self, amount: float, label: str | None = None) -> None:
        self.done = min(self.done + amount, self.total)
        if label is not None:
            self.label = label
        self._draw()

    def _draw(self) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed < self.delay:
            return
        frac = self.done / self.total
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        line = f"\r[{bar}] {100 * frac:3.0f}%  {elapsed:5.0f} s  {self.label:<28.28}"
        self.stream.write(line)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
