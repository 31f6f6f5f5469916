"""Column-wise row building: blocks of numpy columns per kind of event, then one table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synth.arrays import Column, Index, Ints

Table = dict[str, Column]


@dataclass(slots=True)
class Rows:
    """Column blocks appended per kind of event, concatenated once at the end."""

    blocks: list[dict[str, Column]] = field(default_factory=list)

    def add(self, n: int, **columns: Column | int | float) -> None:
        block = {name: as_column(value, n) for name, value in columns.items()}
        # Every block must fill the same columns, or a column would silently go missing.
        if self.blocks and block.keys() != self.blocks[0].keys():
            raise ValueError(f"columns {sorted(block)} differ from {sorted(self.blocks[0])}")
        self.blocks.append(block)

    def build(self) -> Table:
        names = list(self.blocks[0]) if self.blocks else []
        return {name: np.concatenate([b[name] for b in self.blocks]) for name in names}


def as_column(value: Column | int | float, n: int) -> Column:
    if isinstance(value, np.ndarray):
        return value.astype(np.float64) if value.dtype.kind == "f" else value.astype(np.int64)
    if isinstance(value, float):
        return np.full(n, value, dtype=np.float64)
    return np.full(n, value, dtype=np.int64)


def full(n: int, value: int) -> Ints:
    return np.full(n, value, dtype=np.int64)


def sort_rows(table: Table, date_column: str) -> tuple[Table, Index]:
    """Rows ordered by person then date, as a real extract would be; returns the order too."""
    person, date = table["person_id"], table[date_column]
    n = len(person)
    if n == 0:
        return table, np.arange(0, dtype=np.intp)
    # One int64 key sorts far faster than lexsort; the row number in it makes keys unique,
    # so the order cannot depend on which sort algorithm numpy picks on this machine. Rows
    # come in runs already ordered by person (90-100% of neighbours), which numpy's stable
    # sort exploits: 4-10x faster than its default here, for the same unique order.
    p0, d0 = int(person.min()), int(date.min())
    days = int(date.max()) - d0 + 1
    if (int(person.max()) - p0 + 1) * days * n < 2**62:
        key = ((person - p0) * days + (date - d0)) * n + np.arange(n, dtype=np.int64)
        order: Index = np.argsort(key, kind="stable")
    else:
        order = np.lexsort((date, person))
    return {name: column[order] for name, column in table.items()}, order


def number_rows(table: Table, id_column: str, first: int, order: Index) -> Ints:
    """Gives sorted rows consecutive ids; returns the id of each row in its unsorted position."""
    table[id_column] = np.arange(first, first + len(order), dtype=np.int64)
    by_original: Ints = np.empty(len(order), dtype=np.int64)
    by_original[order] = table[id_column]
    return by_original
