"""Deterministic synthetic OMOP CDM 5.4 databases, one per country, for demos and tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synth.generator import SynthReport, generate

__all__ = ["SynthReport", "generate"]


def __getattr__(name: str) -> Any:
    # The generator (numpy, DuckDB) is loaded on first use, not when `tessera` registers the
    # `synth` subcommand: every service process would otherwise pay for it at start.
    if name in __all__:
        from synth import generator

        return getattr(generator, name)
    raise AttributeError(f"module 'synth' has no attribute {name!r}")
