"""A node's part in a pooled round: whether it takes part, what its shares cost, drawing and
keeping them, and masking them for the wire.

`check_round` decides on the round's form alone (never on the data), before anything is
computed: the node takes part only if the question asks one measure, one that pools securely
(`schema.measures`), its policy lets it, it is one of the participants, every participant is
in its pooling registry, the round has at least its policy's minimum of nodes and at least its
own noise, and the nonce was never used before (`AnswerStore.first_use`). Anything else is
POOL_REFUSED.

Each pooled table's share is v = x + e: the node's count per cell of the table's public
domain plus discrete Gaussian noise of sd σ_pool/√k (k participants), so that the k shares'
noise adds up to the pooled noise σ_pool. Shares are drawn once and kept on the answer store
under their own digest (the table's question digest with the participants) on the
organisation's shelf at σ_pool: the same question of the same organisation over the same
participants gets the same pooled number, free; another participant set draws anew (and
pays). A new table costs each person counted `connectors.noise.pooled_rho`: the pooled
release as anyone who sees it gets it.

Shares exist unmasked only between their draw and `PooledPart.masked`, and are never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from connectors.answers import AnswerStore, CellKey, Shelf, StoredTable
from connectors.canonical import canonical_breakdown, question_digest
from connectors.errors import PoolRefused
from connectors.ledger import units
from connectors.masking import masked
from connectors.noise import MIN_SHARE_SD, NoiseSource, pooled_rho, share_sd
from connectors.pool_peers import PoolKeys, UnknownPeer
from policies.domain import table_domain
from policies.profiles import DisclosureProfile
from schema.codes import MeasureKind, NoiseLevel
from schema.measures import pooled_measure
from schema.pooling import POOL_PROTOCOL, PoolingRequest
from schema.query import Breakdown, CohortQuery

# sigma_pool may equal the node's own sd up to float rounding on the way.
_SD_TOLERANCE = 1e-9


def round_measure(query: CohortQuery) -> MeasureKind:
    """The measure a round pools (`schema.measures.pooled_measure`); PoolRefused when the
    question has none: a round pools one measure, and only one that pools securely."""
    measure = pooled_measure(query)
    if measure is None:
        raise PoolRefused("a pooled round pools one measure, and only one that pools securely")
    return measure


def check_round(
    pooling: PoolingRequest,
    *,
    node_id: str,
    profile: DisclosureProfile,
    noise: NoiseLevel,
    keys: PoolKeys | None,
    query: CohortQuery,
) -> dict[str, bytes]:
    """The round's pairwise secrets, if this node takes part in it as asked; otherwise
    PoolRefused saying why."""
    participants = pooling.participants
    k = len(participants)
    round_measure(query)
    if keys is None:
        raise PoolRefused("this node has no pooling key and registry: it takes part in no round")
    if not profile.secure_pooling:
        raise PoolRefused("this node's policy does not take part in secure pooling")
    if node_id not in participants:
        raise PoolRefused(f"the round's participants do not include this node ({node_id})")
    if k < profile.pool_min_nodes:
        raise PoolRefused(
            f"a round of {k} nodes is below this node's minimum of {profile.pool_min_nodes}"
        )
    own = profile.noise_sd(noise)
    if pooling.sigma < own * (1 - _SD_TOLERANCE):
        raise PoolRefused(
            f"the round's noise sd {pooling.sigma:g} is below this node's own {own:g}"
        )
    if share_sd(pooling.sigma, k) < MIN_SHARE_SD:
        raise PoolRefused(
            f"noise sd {pooling.sigma:g} over {k} nodes gives shares below {MIN_SHARE_SD:g}"
        )
    try:
        return keys.secrets(participants)
    except UnknownPeer as unknown:
        raise PoolRefused(
            f"participant {unknown.node_id} is not in this node's pooling registry"
        ) from None


async def claim_nonce(answers: AnswerStore, pooling: PoolingRequest) -> None:
    """Record the round's nonce, or refuse a nonce this node has seen before: the same masks
    over two different shares would give their difference away."""
    if not await answers.first_use(pooling.nonce):
        raise PoolRefused("the round's nonce was used before: every round needs a new one")


def pooled_digest(digest: str, participants: Iterable[str]) -> str:
    """Where a table's shares for a participant set are kept: never a national table's."""
    text = "\0".join([POOL_PROTOCOL, digest, *participants])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PooledPart:
    """This node's pooled tables in one round: their digests, where their shares are kept,
    what new ones cost, and how to draw and mask them."""

    pooling: PoolingRequest
    node_id: str
    secrets: Mapping[str, bytes]
    query: CohortQuery
    # The measure whose values the shares are of (`round_measure`).
    measure: MeasureKind
    # Each pooled table's question digest (what the masks are bound to) and shelf digest.
    digests: Mapping[Breakdown, str]
    shelved: Mapping[Breakdown, str]
    shelf: Shelf

    @classmethod
    def of(
        cls,
        pooling: PoolingRequest,
        *,
        node_id: str,
        secrets: Mapping[str, bytes],
        query: CohortQuery,
        owner: str,
        release: str,
    ) -> PooledPart:
        digests = {by: question_digest(query, by) for by in pooling.tables}
        return cls(
            pooling=pooling,
            node_id=node_id,
            secrets=secrets,
            query=query,
            measure=round_measure(query),
            digests=digests,
            shelved={by: pooled_digest(d, pooling.participants) for by, d in digests.items()},
            shelf=Shelf(owner=owner, release=release, sd=pooling.sigma),
        )

    @property
    def share_sd(self) -> float:
        return share_sd(self.pooling.sigma, len(self.pooling.participants))

    async def stored(self, answers: AnswerStore) -> dict[str, StoredTable]:
        return await answers.get(self.shelf, list(self.shelved.values()))

    def new(self, stored: Mapping[str, StoredTable]) -> dict[str, Breakdown]:
        """The pooled tables without stored shares, by shelf digest."""
        return {d: by for by, d in self.shelved.items() if d not in stored}

    def cost(self, new: Iterable[Breakdown]) -> int:
        """What the new pooled tables cost each person counted, in ledger units."""
        k = len(self.pooling.participants)
        return sum(
            units(pooled_rho(self.pooling.sigma, k, len(table_domain(by, self.query))))
            for by in new
        )

    def draw(
        self, full: Mapping[str, Mapping[CellKey, int]], noise: NoiseSource
    ) -> dict[str, StoredTable]:
        """Each new table's shares (by shelf digest): its counts, each with noise of the
        share sd."""
        drawn = {}
        for digest, cells in full.items():
            keys = list(cells)
            shares = noise.draw([cells[key] for key in keys], self.share_sd)
            drawn[digest] = StoredTable(dict(zip(keys, shares, strict=True)))
        return drawn

    def masked(self, stored: Mapping[str, StoredTable]) -> dict[Breakdown, NDArray[np.uint64]]:
        """Each pooled table's shares, masked for this round, one per cell of its public
        domain in the order of its dimensions as asked."""
        pooling = self.pooling
        out = {}
        for by in pooling.tables:
            table = stored[self.shelved[by]]
            order = [by.index(d) for d in canonical_breakdown(by)]
            values = np.fromiter(
                (table.cells[tuple(key[i] for i in order)] for key in table_domain(by, self.query)),
                dtype=np.int64,
            )
            out[by] = masked(
                values,
                own=self.node_id,
                secrets=self.secrets,
                nonce=pooling.nonce_bytes(),
                participants=pooling.participants,
                digest=self.digests[by],
                round_number=pooling.round,
                sigma=pooling.sigma,
            )
        return out
