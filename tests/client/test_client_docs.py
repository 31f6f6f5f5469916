"""The examples in the client's docstrings run as written."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from tessera.client import answer, client, columns, errors, frames, questions


@pytest.mark.parametrize("module", [answer, client, columns, errors, frames, questions])
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
