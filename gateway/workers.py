"""The gateway on several processes (`TESSERA_GATEWAY_PROCESSES`, `serving.prefork`): what
each worker keeps for itself and what the workers share.

- Audit: one chain per worker in the one trail (`audit_chain`). A chain's writer seals each
  entry after the head it reads in the append's transaction, so one chain shared by every
  worker would put every question of every worker in a queue for that head. Worker 0 writes
  the chain one process writes (`gateway:<id>`), so going from one process to several
  continues it; worker k > 0 writes `gateway:<id>/worker-<k>`. A restarted worker takes its
  slot's number and continues its chain. `tessera audit verify` verifies every chain of the
  trail, and the compliance API reads all of the gateway's (`gateway_chains`).
- Rate limits ("quotas": per researcher per minute, per approval per day): shared, in the
  SQLite file RATE_DB (one host) or in Redis; every worker takes its tokens from the same
  buckets in one transaction.
- The applicant's privacy ledger and the replay caches of one-use request tokens: kept by the
  nodes, not the gateway; a question is charged at the node whichever worker sends it.
- Questions in flight per researcher and per application (`gateway.fairshare`): in memory,
  so each worker holds `worker_share` of each cap: together never more than the cap (for a
  cap of at least the number of workers).
- Turns for the fan-out and combining (`gateway.admission`): per worker, each with the whole
  of MAX_ACTIVE_COHORTS and MAX_WAITING_COHORTS, since they bound one process's memory.
- Circuit breakers, node health, per-node in-flight slots and connections: per worker. They
  protect availability, not data: each worker finds a failing node by itself (up to
  CIRCUIT_FAILURES requests each), and a node sees up to PROCESSES × NODE_MAX_IN_FLIGHT
  requests from the gateway.
- Metrics (`GET /metrics`): each worker counts its own, and a scrape of any worker shows
  every worker's series, labelled `worker` (`gateway.worker_metrics`).
- Policy files and the federation's JWKS: each worker loads and reloads them; SIGHUP to the
  parent reaches every worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

WORKER_SEPARATOR: Final = "/worker-"


def audit_chain(gateway_id: str, worker: int = 0) -> str:
    """The audit chain worker `worker` of gateway `gateway_id` writes."""
    if worker < 0:
        raise ValueError("a worker number is not negative")
    chain = f"gateway:{gateway_id}"
    return chain if worker == 0 else f"{chain}{WORKER_SEPARATOR}{worker}"


def gateway_chains(gateway_id: str, chains: Iterable[str]) -> list[str]:
    """Those of `chains` that workers of gateway `gateway_id` write, by worker."""
    own = audit_chain(gateway_id)
    prefix = own + WORKER_SEPARATOR
    found = {c for c in chains if c == own or (c.startswith(prefix) and _number(c[len(prefix) :]))}
    return sorted(found, key=worker_of)


def worker_of(chain: str) -> int:
    """The worker that writes a gateway's `chain` (0: the chain of a gateway of one process)."""
    _, separator, number = chain.rpartition(WORKER_SEPARATOR)
    return int(number) if separator and _number(number) else 0


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit() and str(int(text)) == text and int(text) > 0


def worker_share(cap: int, processes: int) -> int:
    """What one of `processes` workers holds of a cap kept in memory: the workers together
    hold no more than `cap` (but at least one each)."""
    return max(1, cap // processes)
