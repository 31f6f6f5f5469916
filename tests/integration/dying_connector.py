"""A real connector that dies between storing an answer and releasing it, for crash tests:

    python tests/integration/dying_connector.py connector serve ...   # as `python -m tessera`

It is `tessera connector serve` with the same arguments and files, but as soon as a question's
new answer is in the answer store and every charge so far has been flushed, the process kills
itself with SIGKILL, before the answer is released: the moment after which a node that lost
its stored answer would answer the same question again with a new draw.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from connectors.answers import Shelf, SqliteAnswers, StoredTable
from connectors.ledger import FileLedger
from tessera.cli import main

_ledgers: list[FileLedger] = []
_init = FileLedger.__init__
_put = SqliteAnswers.put


def _remembered(self: FileLedger, directory: Path) -> None:
    _init(self, directory)
    _ledgers.append(self)


async def _put_then_die(
    self: SqliteAnswers, shelf: Shelf, tables: Mapping[str, StoredTable], *, synced: bool = True
) -> dict[str, StoredTable]:
    stored = await _put(self, shelf, tables, synced=synced)
    for ledger in _ledgers:
        await ledger.flush()  # returns once every charge so far is written
    os.kill(os.getpid(), signal.SIGKILL)
    return stored


FileLedger.__init__ = _remembered  # type: ignore[method-assign]
SqliteAnswers.put = _put_then_die  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
