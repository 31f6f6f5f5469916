"""The deadline of one query: the gateway's default, or the researcher's `deadlineMs` within
the bounds the operator allows."""

from __future__ import annotations

from gateway.settings import MIN_DEADLINE_S
from schema.errors import ErrorCode, TesseraError


def query_deadline(deadline_ms: int | None, *, default_s: float, max_s: float) -> float:
    """The deadline in seconds; INVALID_ARGUMENT outside [0.1 s, max_s]."""
    if deadline_ms is None:
        return default_s
    low_ms, high_ms = round(MIN_DEADLINE_S * 1000), int(max_s * 1000)
    if not low_ms <= deadline_ms <= high_ms:
        raise TesseraError(
            f"deadlineMs must lie between {low_ms} and {high_ms}",
            code=ErrorCode.INVALID_ARGUMENT,
            argument="deadlineMs",
            min=low_ms,
            max=high_ms,
        )
    return deadline_ms / 1000
