"""The released answer's plain form for its hash (`gateway.query_trail.released_result`):
each cell exactly as its model's serialiser writes it, whether made by hand or not."""

from __future__ import annotations

from bench import combine as bench_combine
from gateway.combine import combine
from gateway.pool_guard import guard_pools
from gateway.query_trail import _PlainCells
from gateway.vetting import vet
from policies.loader import load_policy_set
from schema.audit.entry import canonical_json
from schema.codes import Dimension, ValueStatus
from schema.result import Cell, DimensionValue, Reason, Value


def _serialised(cell: Cell) -> str:
    """The cell as the answer's hash reads it, from the model's own serialiser."""
    data: dict[str, object] = cell.model_dump(mode="json")
    for key in ("summary", "rate"):
        if data.get(key) is None:
            data.pop(key, None)
    return canonical_json(data)


def test_every_cell_of_a_combined_answer_is_plain_as_serialised() -> None:
    policies = load_policy_set()
    answered = bench_combine.answers(3, policies)
    vetted = [
        vet(o, policies.profile(o.jurisdiction), answered.requests[o.jurisdiction])
        for o in answered.outcomes
    ]
    tables = [*bench_combine.GATEWAY_TABLES, (Dimension.JURISDICTION, Dimension.AGE_BAND_5)]
    combined = guard_pools(combine(tables, vetted, policies.profile), vetted)
    plain = _PlainCells()
    cells = [c for cells in combined.tables.values() for c in cells]
    statuses = {c.count.status for c in cells}
    assert {ValueStatus.PERTURBED, ValueStatus.LOW, ValueStatus.SUPPRESSED} <= statuses
    assert any(c.count.reasons for c in cells)
    for cell in cells:
        assert canonical_json(plain.cell(cell)) == _serialised(cell)


def test_a_value_of_unusual_types_is_left_to_the_serialiser() -> None:
    reason = Reason(rule="NOISE", message="noise")
    dimensions = [DimensionValue(name=Dimension.SEX, value="FEMALE")]
    plain = _PlainCells()
    for count in [
        # An integer where a float belongs: what the serialiser writes of it is its business.
        Value.trusted(
            value=12,
            status=ValueStatus.PERTURBED,
            reasons=[reason],
            bound=None,
            sd=5,
            contributors=None,
        ),
        Value(value=None, status=ValueStatus.LOW, reasons=[reason], sd=5.0, bound=0.5),
        Value(value=7, status=ValueStatus.PERTURBED, contributors=["FR", "DK"]),
    ]:
        cell = Cell(dimensions=dimensions, count=count)
        assert canonical_json(plain.cell(cell)) == _serialised(cell)
