"""Does the federation file agree with the nodes it names?

Every node says who it is and whom it trusts in its `GET /readyz` (`identity`, a
`schema.wire.NodeIdentity`). A gateway whose federation file disagrees with a node would
only find out at query time, with every request refused (`WRONG_NODE`, `BAD_SIGNATURE`,
`APPROVAL_INVALID`): this module finds out before, and names both values.

The rules, each a small function of (federation, node entry, node identity):

- node id and jurisdiction: the file's `node_id` and `jurisdiction` are the node's;
- gateway issuer: the node takes request tokens from the gateway's `id`;
- permit audience: the node takes permits for the gateway's `id` (the researchers' token
  audience);
- signing key: the node trusts the gateway's `signing_kid`, with the same key material;
- HDAB: the gateway takes the node's jurisdiction's permits from the node's own HDAB;
- datasets: a node entry's `datasets` are ones the node serves (a warning: permits naming
  one the node serves still work).

`tessera federation check FILE` runs them once and prints the report; the running gateway
runs them at start and again every few minutes (`FederationWatch`): a mismatch is logged
as an error and shown in `/readyz` (`details.federation`), naming both values, until the
node agrees (asked again every few seconds meanwhile); while no node agrees, `/readyz` is
503 with the mismatches. A node that cannot be asked is only reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from gateway.federation import Federation, NodeInfo
from gateway.nodes import USER_AGENT
from schema.wire import READY_PATH, NodeIdentity
from trust.keys import thumbprint

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]

TIMEOUT_S: Final = 5.0
# A node's /readyz is a small JSON object; anything far larger is not one.
MAX_READY_BYTES: Final = 64 * 1024
# The running gateway asks again soon while a node cannot be asked or disagrees, rarely once
# all agree.
RETRY_S: Final = 2.0
RECHECK_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One disagreement: what, the federation file's value and the node's."""

    what: str
    severity: Severity
    expected: str
    found: str
    message: str


@dataclass(frozen=True, slots=True)
class NodeCheck:
    node: NodeInfo
    identity: NodeIdentity | None
    # Why the node's identity could not be read (None when it was).
    unreachable: str | None = None
    findings: tuple[Finding, ...] = ()

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    def lines(self) -> list[str]:
        node = self.node
        head = f"{node.jurisdiction.value} {node.node_id} ({node.url}, {node.latency.value})"
        if self.unreachable is not None:
            return [f"{head}: not checked: {self.unreachable}"]
        if not self.findings:
            return [f"{head}: ok"]
        return [f"{head}: {f.severity}: {f.message}" for f in self.findings]


@dataclass(frozen=True, slots=True)
class FederationReport:
    checks: tuple[NodeCheck, ...]

    @property
    def errors(self) -> list[str]:
        return [f"{c.node.jurisdiction.value}: {f.message}" for c in self.checks for f in c.errors]

    @property
    def unchecked(self) -> tuple[NodeCheck, ...]:
        return tuple(c for c in self.checks if c.unreachable is not None)

    def render(self) -> str:
        lines = [line for check in self.checks for line in check.lines()]
        errors, unchecked = len(self.errors), len(self.unchecked)
        if errors or unchecked:
            lines.append(f"{errors} mismatch(es), {unchecked} node(s) not checked")
        else:
            lines.append(f"all {len(self.checks)} node(s) agree with the federation file")
        return "\n".join(lines) + "\n"

    @property
    def exit_code(self) -> int:
        return 1 if self.errors or self.unchecked else 0


Rule = Callable[[Federation, NodeInfo, NodeIdentity], Iterable[Finding]]


def _node_id(federation: Federation, node: NodeInfo, identity: NodeIdentity) -> Iterable[Finding]:
    if identity.node_id != node.node_id:
        yield Finding(
            "node id",
            "error",
            node.node_id,
            identity.node_id,
            f"node id: the federation file says node_id = {node.node_id!r}, the node at "
            f"{node.url} is {identity.node_id!r} (its --node-id, TESSERA_CONNECTOR_NODE_ID, "
            "default tessera-node-<jurisdiction>); it would refuse every request (WRONG_NODE)",
        )


def _jurisdiction(
    federation: Federation, node: NodeInfo, identity: NodeIdentity
) -> Iterable[Finding]:
    if identity.jurisdiction != node.jurisdiction:
        yield Finding(
            "jurisdiction",
            "error",
            node.jurisdiction.value,
            identity.jurisdiction.value,
            f"jurisdiction: the federation file says {node.jurisdiction.value}, the node at "
            f"{node.url} serves {identity.jurisdiction.value}",
        )


def _gateway_issuer(
    federation: Federation, node: NodeInfo, identity: NodeIdentity
) -> Iterable[Finding]:
    if identity.gateway_issuer != federation.gateway_id:
        yield Finding(
            "gateway issuer",
            "error",
            federation.gateway_id,
            identity.gateway_issuer,
            f"gateway issuer: the gateway's id is {federation.gateway_id!r} ([gateway] id), the "
            f"node expects requests from {identity.gateway_issuer!r} (its --gateway-issuer, "
            "TESSERA_CONNECTOR_GATEWAY_ISSUER); it would refuse every request (BAD_SIGNATURE)",
        )


def _audience(federation: Federation, node: NodeInfo, identity: NodeIdentity) -> Iterable[Finding]:
    if identity.approval_audience != federation.gateway_id:
        yield Finding(
            "permit audience",
            "error",
            federation.gateway_id,
            identity.approval_audience,
            f"permit audience: researchers' tokens and permits are for {federation.gateway_id!r} "
            f"([gateway] id), the node accepts permits for {identity.approval_audience!r} "
            "(TESSERA_CONNECTOR_APPROVAL_AUDIENCE, default its gateway issuer); it would refuse "
            "every permit (APPROVAL_INVALID)",
        )


def _signing_key(
    federation: Federation, node: NodeInfo, identity: NodeIdentity
) -> Iterable[Finding]:
    kid = federation.signing_kid
    public: Ed25519PublicKey = federation.signing_key.public_key()
    ours = thumbprint(public)
    trusted = {k.kid: k.thumbprint for k in identity.gateway_keys}
    if kid not in trusted:
        listed = ", ".join(sorted(trusted)) or "none"
        yield Finding(
            "gateway key",
            "error",
            kid,
            listed,
            f"gateway key: the gateway signs with key {kid!r} (signing_kid), the node trusts "
            f"gateway keys: {listed} (its --gateway-key, --gateway-jwks); it would refuse every "
            "request",
        )
    elif trusted[kid] != ours:
        yield Finding(
            "gateway key",
            "error",
            ours,
            trusted[kid],
            f"gateway key: the node's key {kid!r} is not the gateway's signing key (thumbprint "
            f"{trusted[kid]} at the node, {ours} of signing_key); it would refuse every request "
            "(BAD_SIGNATURE)",
        )


def _hdab(federation: Federation, node: NodeInfo, identity: NodeIdentity) -> Iterable[Finding]:
    permitted = sorted(
        iss for iss in federation.issuers if federation.issues_permits_for(iss, node.jurisdiction)
    )
    listed = ", ".join(permitted) or "no issuer"
    if not identity.hdab_issuer:
        yield Finding(
            "HDAB",
            "warning",
            listed,
            "",
            f"HDAB: the node has no HDAB configured (--hdab-issuer); the gateway takes "
            f"{node.jurisdiction.value}'s permits from {listed}",
        )
    elif identity.hdab_issuer not in permitted:
        yield Finding(
            "HDAB",
            "error",
            listed,
            identity.hdab_issuer,
            f"HDAB: the node checks permits from {identity.hdab_issuer!r} (its --hdab-issuer), "
            f"the gateway takes {node.jurisdiction.value}'s permits from {listed} ([[issuers]] "
            "with its jurisdiction); no permit could reach the node",
        )


def _datasets(federation: Federation, node: NodeInfo, identity: NodeIdentity) -> Iterable[Finding]:
    if node.datasets is None or not identity.datasets:
        return
    missing = sorted(node.datasets - set(identity.datasets))
    if missing:
        yield Finding(
            "datasets",
            "warning",
            ", ".join(sorted(node.datasets)),
            ", ".join(identity.datasets),
            f"datasets: the federation file lists {', '.join(sorted(node.datasets))}, the node "
            f"serves {', '.join(identity.datasets)} (its node policy's node.datasets); permits "
            f"naming {', '.join(missing)} would be refused by the node",
        )


RULES: Final[tuple[Rule, ...]] = (
    _node_id,
    _jurisdiction,
    _gateway_issuer,
    _audience,
    _signing_key,
    _hdab,
    _datasets,
)


def compare(
    federation: Federation,
    node: NodeInfo,
    identity: NodeIdentity,
    rules: Sequence[Rule] = RULES,
) -> tuple[Finding, ...]:
    return tuple(finding for rule in rules for finding in rule(federation, node, identity))


def check_session() -> aiohttp.ClientSession:
    """As the gateway's own requests reach the nodes: no proxy from the environment."""
    return aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}, trust_env=False)


async def fetch_identity(
    session: aiohttp.ClientSession, node: NodeInfo, timeout_s: float = TIMEOUT_S
) -> NodeIdentity | str:
    """The node's identity from its `/readyz` (ready or not), or why it could not be read."""
    try:
        async with session.get(
            f"{node.url}{READY_PATH}", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            body = await response.content.read(MAX_READY_BYTES + 1)
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"cannot reach {node.url}{READY_PATH} ({type(exc).__name__})"
    if len(body) > MAX_READY_BYTES:
        return f"{node.url}{READY_PATH} answered more than {MAX_READY_BYTES} bytes"
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"{node.url}{READY_PATH} answered HTTP {status} without JSON: not a Tessera node"
    raw = document.get("identity") if isinstance(document, dict) else None
    if raw is None:
        return f"{node.url}{READY_PATH} (HTTP {status}) does not say who the node is"
    try:
        return NodeIdentity.model_validate(raw)
    except ValidationError as exc:
        return f"{node.url}{READY_PATH}: its identity is malformed ({exc.error_count()} error(s))"


async def check_node(
    session: aiohttp.ClientSession,
    federation: Federation,
    node: NodeInfo,
    timeout_s: float = TIMEOUT_S,
) -> NodeCheck:
    identity = await fetch_identity(session, node, timeout_s)
    if isinstance(identity, str):
        return NodeCheck(node, None, unreachable=identity)
    return NodeCheck(node, identity, findings=compare(federation, node, identity))


async def check_federation(
    federation: Federation,
    session: aiohttp.ClientSession | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
) -> FederationReport:
    """Asks every node of `federation` at once and compares what each says."""
    async with contextlib.AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(check_session())
        checks = await asyncio.gather(
            *(check_node(session, federation, n, timeout_s) for n in federation.nodes.values())
        )
    return FederationReport(tuple(checks))


class FederationWatch:
    """The running gateway's check: at start and every `RECHECK_S` (every `RETRY_S` while a
    node cannot be asked or disagrees). Mismatches are logged once each, as errors;
    `readiness` fails while no node agrees; `details` says, per node, what the last check
    found."""

    def __init__(
        self, federation: Federation, *, retry_s: float = RETRY_S, recheck_s: float = RECHECK_S
    ) -> None:
        self.federation = federation
        self.retry_s = retry_s
        self.recheck_s = recheck_s
        self.report: FederationReport | None = None
        self._logged: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = check_session()
        self._task = asyncio.create_task(self._run(), name="federation check")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def check_once(self) -> FederationReport:
        assert self._session is not None  # started
        report = await check_federation(self.federation, self._session)
        self.report = report
        for check in report.checks:
            for finding in check.findings:
                line = f"{check.node.jurisdiction.value}: {finding.message}"
                if line not in self._logged:
                    self._logged.add(line)
                    level = logging.ERROR if finding.severity == "error" else logging.WARNING
                    log.log(level, "federation file mismatch: %s", line)
        return report

    async def _run(self) -> None:
        while True:
            try:
                report = await self.check_once()
                # A disagreement may be a moment's (a node not yet re-reading a rotated key):
                # asked again soon, like a node not reached.
                wait = self.retry_s if report.unchecked or report.errors else self.recheck_s
            except Exception:  # the check must never take the gateway down
                log.exception("the federation check failed")
                wait = self.retry_s
            await asyncio.sleep(wait)

    async def readiness(self) -> str | None:
        """Not ready when no node agrees with the file and one disagrees: nothing could be
        answered (a wrong gateway id, say). One hub's disagreement is reported (log,
        `details`) but leaves the others to answer: it must not take the federation down."""
        report = self.report
        if report is None or not report.errors:
            return None
        if any(c.unreachable is None and not c.errors for c in report.checks):
            return None
        return "the federation file disagrees with its nodes: " + "; ".join(report.errors)

    def details(self) -> Mapping[str, str]:
        if self.report is None:
            return {"state": "checking"}
        found: dict[str, str] = {}
        for check in self.report.checks:
            if check.unreachable is not None:
                found[check.node.jurisdiction.value] = "not checked yet: " + check.unreachable
            elif check.findings:
                found[check.node.jurisdiction.value] = "; ".join(f.message for f in check.findings)
            else:
                found[check.node.jurisdiction.value] = "agrees"
        return found
