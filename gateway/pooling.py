"""Secure pooling at the gateway: who takes part in a pooled round, what each participant is
asked, and what the round comes to.

The tables a question asks without JURISDICTION, and its pooled count when it asks for it,
are pooled securely: the nodes of the question whose jurisdiction takes part
(`disclosure.secure_pooling`) and which have a pooling key (`pools = true` in the federation
file) send them only as masked shares (`schema.pooling`), and the gateway adds the shares up.
Every participant's masks cancel in the sum, which is the pooled noisy count; no share, and
no sum over fewer than all participants, tells the gateway anything. The others answer those
tables nationally, as before.

A participant releases its own total only when the question asks for it: each country's
`count` selected, or a table by JURISDICTION alone. When the pooled count is pooled securely,
it is otherwise the question's only total, charged once (`national_total`).

A round pools one measure, one that pools securely (`schema.measures`: the count of persons);
a question asking anything else is answered nationally by every node.

Who takes part depends only on the question, the policies and the federation file, never
on the data: the nodes asked and allowed, whose jurisdiction takes part, less those whose
minimum of nodes (`min_nodes`) the rest cannot meet. A round needs two nodes at least. Its
noise is the strictest participant's sd for the question's noise level, which every node
checks is at least its own.

A node that fails in a round (or refuses it) leaves masks that do not cancel: the round is
abandoned and run once more with the nodes that answered (`gateway.rounds`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.federation import NodeInfo
from gateway.nodes import CellKey, NodeOutcome
from gateway.planner import Plan
from policies.domain import table_domain
from policies.profiles import DisclosureProfile
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus
from schema.measures import pooled_measure
from schema.pooling import MIN_PARTICIPANTS, NONCE_BYTES, PoolingRequest, encode_nonce, pooled_sum
from schema.query import Breakdown
from schema.result import Reason
from schema.wire import node_dimensions

SECURE_POOL = "SECURE_POOL"

Profiles = Callable[[Jurisdiction], DisclosureProfile]


@dataclass(frozen=True, slots=True)
class PoolRound:
    """One pooled round: its participants, in node-id order, and what each is asked."""

    number: int
    participants: tuple[Jurisdiction, ...]
    request: PoolingRequest

    @property
    def requests(self) -> dict[Jurisdiction, PoolingRequest]:
        return {j: self.request for j in self.participants}


@dataclass(frozen=True, slots=True)
class SecurePool:
    """A completed round: the pooled noisy count of every cell of every pooled table (a
    signed integer: noise may take a small count below zero), over `contributors`."""

    contributors: tuple[Jurisdiction, ...]
    sigma: float
    cells: Mapping[Breakdown, Mapping[CellKey, int]]
    measure: MeasureKind


@dataclass(frozen=True, slots=True)
class Pooling:
    """What secure pooling came to for a question: the node tables that were to be pooled
    (their participants released them only as shares), each table's public domain, and the
    completed pool, or why there is none."""

    tables: tuple[Breakdown, ...]
    domains: Mapping[Breakdown, tuple[CellKey, ...]]
    pool: SecurePool | None
    failure: Reason | None = None


def pooled_tables(plan: Plan, *, total: bool) -> tuple[Breakdown, ...]:
    """The node tables pooled securely: those asked without JURISDICTION, and the total if
    the question asks for the pooled count."""
    tables = [t for t in plan.tables if Dimension.JURISDICTION not in t and (t or total)]
    return tuple(dict.fromkeys(tables))


def national_tables(plan: Plan, *, total: bool) -> tuple[Breakdown, ...]:
    """The node tables a participant still releases on its own: those asked by JURISDICTION
    (a table by JURISDICTION alone is each country's total), and the total if `total`."""
    by_country = [node_dimensions(t) for t in plan.tables if Dimension.JURISDICTION in t]
    return tuple(dict.fromkeys([*([()] if total else []), *by_country]))


def national_total(tables: Sequence[Breakdown], *, per_country: bool) -> bool:
    """Whether a participant releases its own total: when the question asks each country's
    count (`per_country`), or when the total is not pooled securely (the pooled count is then
    the sum of the national ones). Otherwise the pooled count is the question's only total,
    and a national one next to it would be a second release of it, charged to every person
    counted. Decided on the question's form alone, never on the data."""
    return per_country or () not in tables


def participants(
    candidates: Iterable[Jurisdiction],
    nodes: Mapping[Jurisdiction, NodeInfo],
    profiles: Profiles,
) -> tuple[Jurisdiction, ...]:
    """The candidates that take part, in node-id order: those that pool, less any whose
    minimum of nodes the others cannot meet (repeated until every one's is met)."""
    chosen = [j for j in candidates if nodes[j].pools and profiles(j).secure_pooling]
    while True:
        kept = [j for j in chosen if profiles(j).pool_min_nodes <= len(chosen)]
        if kept == chosen:
            break
        chosen = kept
    if len(chosen) < MIN_PARTICIPANTS:
        return ()
    return tuple(sorted(chosen, key=lambda j: nodes[j].node_id))


def plan_round(
    number: int,
    candidates: Iterable[Jurisdiction],
    plan: Plan,
    tables: Sequence[Breakdown],
    nodes: Mapping[Jurisdiction, NodeInfo],
    profiles: Profiles,
    *,
    per_country: bool = True,
) -> PoolRound | None:
    """Round `number` over the candidates that take part, or None when fewer than two do
    (or there is nothing to pool). `per_country`: whether the question asks each country's
    own count (`national_total`)."""
    chosen = participants(candidates, nodes, profiles)
    if not chosen or not tables or pooled_measure(plan.node_query) is None:
        return None
    request = PoolingRequest(
        nonce=encode_nonce(secrets.token_bytes(NONCE_BYTES)),
        round=number,
        participants=[nodes[j].node_id for j in chosen],
        sigma=max(profiles(j).noise_sd(plan.noise) for j in chosen),
        tables=list(tables),
        national=list(national_tables(plan, total=national_total(tables, per_country=per_country))),
    )
    return PoolRound(number=number, participants=chosen, request=request)


def unmask(
    round_: PoolRound, outcomes: Mapping[Jurisdiction, NodeOutcome], plan: Plan
) -> SecurePool | None:
    """The round's pooled counts, when every participant answered with its shares; None
    otherwise (a sum over fewer nodes is noise, and is never computed)."""
    parts = [outcomes.get(j) for j in round_.participants]
    tables = round_.request.tables
    answered = [
        o
        for o in parts
        if o is not None and o.status is NodeStatus.OK and set(o.shares) == set(tables)
    ]
    measure = pooled_measure(plan.node_query)
    if len(answered) != len(round_.participants) or measure is None:
        return None
    cells = {}
    for by in tables:
        sums = pooled_sum([o.shares[by] for o in answered])
        cells[by] = dict(zip(table_domain(by, plan.node_query), sums.tolist(), strict=True))
    return SecurePool(
        contributors=tuple(sorted(round_.participants, key=list(Jurisdiction).index)),
        sigma=round_.request.sigma,
        cells=cells,
        measure=measure,
    )


def domains(plan: Plan, tables: Iterable[Breakdown]) -> dict[Breakdown, tuple[CellKey, ...]]:
    return {by: tuple(table_domain(by, plan.node_query)) for by in tables}
