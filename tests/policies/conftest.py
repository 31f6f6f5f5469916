"""Policy test fixtures: the shipped policy set, loaded once."""

from __future__ import annotations

import pytest

from policies.loader import load_policy_set
from policies.policy_set import PolicySet


@pytest.fixture(scope="session")
def shipped() -> PolicySet:
    return load_policy_set()
