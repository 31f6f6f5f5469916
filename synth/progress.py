"""A one-line progress bar on stderr (no dependency for something this small)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int, label: str, *, enabled: bool, stream: TextIO | None = None):
        self._total = max(total, 1)
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        # Redrawing with carriage returns only makes sense on a terminal; in a log or a CI
        # transcript the bar would pile up into one unreadable line, so print only the end.
        self._live = enabled and self._stream.isatty()
        self._enabled = enabled
        self._done = 0
        self._started = time.perf_counter()

    def advance(self, amount: int, note: str = "") -> None:
        self._done = min(self._done + amount, self._total)
        self._draw(note)

    def note(self, note: str) -> None:
        self._draw(note)

    def close(self, note: str = "done") -> None:
        self._draw(note, final=True)
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, note: str, *, final: bool = False) -> None:
        if not (self._live or (self._enabled and final)):
            return
        width = 30
        filled = width * self._done // self._total
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.perf_counter() - self._started
        self._stream.write(
            ("\r" if self._live else "")
            + f"{self._label} [{bar}] {100 * self._done // self._total:3d}% "
            f"{self._done:,}/{self._total:,} {elapsed:6.1f}s {note:<24}"
        )
        self._stream.flush()
