"""What a researcher sends the gateway with a question: a bearer token that says who they are,
and one permit per jurisdiction, each in its own `X-Tessera-Permit` header, exactly as its
HDAB signed it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from schema.wire import PERMIT_HEADER


@dataclass(frozen=True, slots=True)
class Credentials:
    bearer: str | None
    permits: tuple[str, ...] = ()

    @classmethod
    def of(cls, bearer: str | None, permits: Iterable[str] = ()) -> Credentials:
        return cls(bearer, tuple(permits))

    @classmethod
    def read(cls, bearer_file: Path, permit_files: Iterable[Path]) -> Credentials:
        """From token files, as the demo writes them (one JWT per file)."""
        return cls(
            bearer_file.read_text().strip(),
            tuple(path.read_text().strip() for path in permit_files),
        )

    def without(self, *permits: str) -> Credentials:
        return Credentials(self.bearer, tuple(p for p in self.permits if p not in permits))

    def headers(self) -> list[tuple[str, str]]:
        """The HTTP headers, one line per permit (a header may repeat)."""
        lines = [] if self.bearer is None else [("Authorization", f"Bearer {self.bearer}")]
        return lines + [(PERMIT_HEADER, permit) for permit in self.permits]
