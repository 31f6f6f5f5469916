"""Deterministic synthetic OMOP CDM 5.4 databases, one per country, for demos and tests."""

from synth.generator import SynthReport, generate

__all__ = ["SynthReport", "generate"]
