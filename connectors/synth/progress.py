"""A one-line progress bar on stderr (no dependency for something this small)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int, label: str, *, enabled: bool, stream: TextIO | None = None):
        self._total = max(total, 1)
        self._label = label
        self._enabled = enabled
        self._stream = stream if stream is not None else sys.stderr
        self._done = 0
        self._started = time.perf_counter()

    def advance(self, amount: int, note: str = "") -> None:
        self._done = min(self._done + amount, self._total)
        self._draw(note)

    def note(self, note: str) -> None:
        self._draw(note)

    def close(self, note: str = "done") -> None:
        self._draw(note)
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, note: str) -> None:
        if not self._enabled:
            return
        width = 30
        filled = width * self._done // self._total
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.perf_counter() - self._started
        self._stream.write(
            f"\r{self._label} [{bar}] {100 * self._done // self._total:3d}% "
            f"{self._done:,}/{self._total:,} {elapsed:6.1f}s {note:<24}"
        )
        self._stream.flush()
