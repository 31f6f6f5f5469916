"""The policies a query runs under.

The gateway's policy files are reloaded while it runs (`policies.live`): new rules and
revoked permits take effect without a restart. A query reads the policy set in force once,
at its start, and everything it does uses that one object: the decisions, the rate limits,
combining and, through `profiles`, the vetting of each node's answer, which runs deeper in
the node client stack than the query can hand an argument to (a context variable, which
the fan-out's tasks inherit, carries it there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from policies.live import LivePolicy
from policies.loader import load_policy_set, policy_files
from policies.policy_set import PolicySet
from policies.profiles import DisclosureProfile
from schema.codes import Jurisdiction

_QUERY_POLICIES: ContextVar[PolicySet | None] = ContextVar(
    "tessera_gateway_query_policies", default=None
)


def live_policies(directory: Path | None) -> LivePolicy[PolicySet]:
    """The policy directory's policy set, loaded now (a broken file fails the start) and
    again whenever the files change."""
    return LivePolicy(
        lambda: load_policy_set(directory),
        lambda: policy_files(directory),
        name="gateway policies",
    )


@contextmanager
def query_policies(policies: PolicySet) -> Iterator[PolicySet]:
    """Run the block (and the tasks it starts) under `policies`."""
    token = _QUERY_POLICIES.set(policies)
    try:
        yield policies
    finally:
        _QUERY_POLICIES.reset(token)


def profiles(live: LivePolicy[PolicySet]) -> Callable[[Jurisdiction], DisclosureProfile]:
    """Each jurisdiction's disclosure profile in the policies of the query running, or in the
    policies in force outside a query."""

    def profile(jurisdiction: Jurisdiction) -> DisclosureProfile:
        return (_QUERY_POLICIES.get() or live.current).profile(jurisdiction)

    return profile
