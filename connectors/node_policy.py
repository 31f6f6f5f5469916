"""The policy a node applies, as one object a question reads once: the node's effective
policy (EU baseline, its jurisdiction, its own layer), the disclosure profile derived from
it, and the datasets the node serves.

Every node serves named datasets, and a permit must name one of them (fail closed): those of
its node layer, or, when the hub names none, one dataset named after the node. The policy
files and the node layer are reloaded while the connector runs (`policies.live`): a revoked
permit or a tightened rule takes effect without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from policies.live import LivePolicy
from policies.loader import load_node_layer, load_policy_set, policy_files
from policies.policy_set import EffectivePolicy
from policies.profiles import DisclosureProfile
from schema.codes import Jurisdiction


@dataclass(frozen=True, slots=True)
class NodePolicy:
    policy: EffectivePolicy
    profile: DisclosureProfile
    datasets: frozenset[str]

    @classmethod
    def of(cls, policy: EffectivePolicy, node_id: str) -> NodePolicy:
        named = policy.node.datasets if policy.node is not None else frozenset()
        return cls(
            policy=policy,
            profile=policy.disclosure_profile(),
            datasets=named or frozenset({node_id}),
        )


def load_node_policy(
    jurisdiction: Jurisdiction,
    node_id: str,
    *,
    policies: Path | None = None,
    node_layer: Path | None = None,
) -> NodePolicy:
    """Raises `PolicyFileError`, `NoPolicy` or `NodeLayerMismatch` for a policy that does not
    load."""
    layer = load_node_layer(node_layer) if node_layer is not None else None
    effective = load_policy_set(policies).effective(jurisdiction, layer)
    return NodePolicy.of(effective, node_id)


def live_node_policy(
    jurisdiction: Jurisdiction,
    node_id: str,
    *,
    policies: Path | None = None,
    node_layer: Path | None = None,
) -> LivePolicy[NodePolicy]:
    """The node's policy, loaded now (a policy that does not load fails the start) and again
    whenever its files change."""

    def files() -> list[Path]:
        return [*policy_files(policies), *([node_layer] if node_layer is not None else [])]

    return LivePolicy(
        lambda: load_node_policy(jurisdiction, node_id, policies=policies, node_layer=node_layer),
        files,
        name=f"policy of {node_id}",
    )
