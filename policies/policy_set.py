"""The loaded policy layers, and the effective policy they yield for a jurisdiction (or for a
cell several jurisdictions contribute to).

A jurisdiction without a policy file has no effective policy: asking for one raises
`NoPolicy`, and the decision refuses that jurisdiction (fail closed). The baseline alone never
stands in for a missing national policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

from policies.compose import compose_with_provenance
from policies.model import (
    REQUIRED_RULES,
    BaselineLayer,
    Budget,
    Dominance,
    Hdab,
    Issuer,
    JurisdictionLayer,
    LayerNode,
    NodeLayer,
    Noise,
    RulePath,
    Rules,
    SecurePooling,
    Sourced,
    dotted,
)
from policies.profiles import BASELINE, DisclosureProfile
from policies.purposes import PUBLIC_BODY_ONLY_BY_LAW, Purpose
from schema.codes import Dimension, Jurisdiction

T = TypeVar("T")
NO_POLICY: Final = "NO_POLICY"
# DisclosureProfile is a schema-style contract whose strings are at most 256 characters.
_PROFILE_SOURCE_MAX = 256


class NoPolicy(LookupError):
    """No policy file for a jurisdiction: nothing may be asked of it."""

    code = NO_POLICY

    def __init__(self, jurisdiction: Jurisdiction) -> None:
        super().__init__(f"no policy for jurisdiction {jurisdiction.value}")
        self.jurisdiction = jurisdiction


class IncompletePolicy(ValueError):
    """A composed policy without a value for a required rule (only possible when layers are
    composed without the baseline)."""

    code = "INCOMPLETE_POLICY"

    def __init__(self, missing: Sequence[RulePath]) -> None:
        super().__init__("policy has no value for " + ", ".join(dotted(p) for p in missing))
        self.missing = tuple(missing)


class NodeLayerMismatch(ValueError):
    code = "NODE_LAYER_MISMATCH"

    def __init__(self, node: LayerNode, jurisdiction: Jurisdiction) -> None:
        super().__init__(
            f"node layer of {node.id} is for {node.jurisdiction.value}, not {jurisdiction.value}"
        )
        self.node = node
        self.jurisdiction = jurisdiction


def _required(rule: Sourced[T] | None) -> Sourced[T]:
    if rule is None:  # EffectivePolicy checks completeness on construction
        raise AssertionError("required rule missing from an effective policy")
    return rule


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """The rules that apply, with where each comes from. Always complete: every required
    rule has a value."""

    jurisdictions: tuple[Jurisdiction, ...]
    layers: tuple[str, ...]
    rules: Rules
    # For each stated rule, the names of the layers it comes from.
    provenance: Mapping[RulePath, tuple[str, ...]]
    hdabs: tuple[Hdab, ...] = ()
    issuers: tuple[Issuer, ...] = ()
    node: LayerNode | None = None

    def __post_init__(self) -> None:
        if missing := self.rules.missing(REQUIRED_RULES):
            raise IncompletePolicy(missing)

    # -- typed access to the rules -----------------------------------------------------------
    @property
    def min_count(self) -> int:
        return _required(self.rules.disclosure.min_count).value

    @property
    def rounding_base(self) -> int:
        return _required(self.rules.disclosure.rounding_base).value

    @property
    def noise(self) -> Noise:
        return _required(self.rules.disclosure.noise).value

    @property
    def budget(self) -> Budget:
        return _required(self.rules.disclosure.budget).value

    @property
    def secure_pooling(self) -> SecurePooling | None:
        """None: no layer says anything, and the jurisdiction does not pool."""
        rule = self.rules.disclosure.secure_pooling
        return None if rule is None else rule.value

    @property
    def dominance(self) -> Dominance | None:
        rule = self.rules.disclosure.dominance
        return None if rule is None else rule.value

    @property
    def p_percent(self) -> float | None:
        rule = self.rules.disclosure.p_percent
        return None if rule is None else rule.value

    @property
    def allowed_dimensions(self) -> frozenset[Dimension]:
        refused = self.rules.dimensions.not_allowed
        allowed = _required(self.rules.dimensions.allowed).value
        return allowed if refused is None else allowed - refused.value

    @property
    def min_age_band_width(self) -> int:
        return _required(self.rules.dimensions.min_age_band_width).value

    @property
    def max_cells(self) -> int:
        return _required(self.rules.dimensions.max_cells).value

    @property
    def allowed_purposes(self) -> frozenset[Purpose]:
        return _required(self.rules.purposes.allowed).value

    @property
    def public_body_only(self) -> frozenset[Purpose]:
        # The law's reservation holds even if a file forgot to restate it.
        return _required(self.rules.purposes.public_body_only).value | PUBLIC_BODY_ONLY_BY_LAW

    @property
    def optout_required(self) -> bool:
        return _required(self.rules.optout.required).value

    @property
    def per_researcher_per_minute(self) -> int:
        return _required(self.rules.rate_limits.per_researcher_per_minute).value

    @property
    def per_approval_per_day(self) -> int:
        return _required(self.rules.rate_limits.per_approval_per_day).value

    @property
    def revoked(self) -> frozenset[str]:
        return _required(self.rules.approvals.revoked).value

    def unverified(self) -> list[RulePath]:
        """Rules whose value no HDAB has confirmed yet."""
        return [path for path, rule in self.rules.rules().items() if not rule.verified]

    def source(self, path: RulePath) -> str:
        rule = self.rules.rule(path)
        return "" if rule is None else rule.source

    def trusts(self, iss: str) -> bool:
        return any(issuer.iss == iss for issuer in self.issuers)

    def disclosure_profile(self) -> DisclosureProfile:
        """The disclosure rules as the `policies.profiles.DisclosureProfile` the disclosure
        pipeline reads; source and verification are those of the minimum count."""
        rule = _required(self.rules.disclosure.min_count)
        source = rule.source
        if len(source) > _PROFILE_SOURCE_MAX:
            source = source[: _PROFILE_SOURCE_MAX - 1] + "…"
        dominance = self.dominance
        budget = self.budget
        pooling = self.secure_pooling
        return DisclosureProfile(
            min_count=rule.value,
            source=source,
            verified=rule.verified,
            rounding_base=self.rounding_base,
            sigma=self.noise.sigma,
            rho_per_applicant=budget.applicant,
            rho_per_organisation=budget.organisation,
            secure_pooling=pooling is not None and pooling.enabled,
            pool_min_nodes=2 if pooling is None else pooling.min_nodes,
            dominance_n=None if dominance is None else dominance.n,
            dominance_k=None if dominance is None else dominance.k,
            p_percent=self.p_percent,
        )


def _node_name(layer: NodeLayer) -> str:
    return f"node {layer.node.id}"


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The EU baseline and the national layers, as loaded from a policy directory."""

    baseline: BaselineLayer
    jurisdictions: Mapping[Jurisdiction, JurisdictionLayer] = field(default_factory=dict)
    # Composed once per jurisdiction: the layers never change once loaded, and the gateway
    # asks for a profile for every cell it releases (composing costs ~0.3 ms).
    _composed: dict[Jurisdiction, EffectivePolicy] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _profiles: dict[Jurisdiction, DisclosureProfile] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def covered(self) -> tuple[Jurisdiction, ...]:
        """Jurisdictions with a policy, in the order of `Jurisdiction`."""
        return tuple(j for j in Jurisdiction if j in self.jurisdictions)

    def layer(self, jurisdiction: Jurisdiction) -> JurisdictionLayer:
        try:
            return self.jurisdictions[jurisdiction]
        except KeyError:
            raise NoPolicy(jurisdiction) from None

    def profile(self, jurisdiction: Jurisdiction) -> DisclosureProfile:
        """The jurisdiction's disclosure profile; without a policy, the strict baseline (a
        jurisdiction without a policy is refused anyway: this only keeps protection closed)."""
        if jurisdiction not in self.jurisdictions:
            return BASELINE
        profile = self._profiles.get(jurisdiction)
        if profile is None:
            profile = self._profiles[jurisdiction] = self.effective(
                jurisdiction
            ).disclosure_profile()
        return profile

    def effective(
        self, jurisdiction: Jurisdiction, node_layer: NodeLayer | None = None
    ) -> EffectivePolicy:
        """Baseline, then the jurisdiction's layer, then the node's layer if given."""
        if node_layer is None and (known := self._composed.get(jurisdiction)) is not None:
            return known
        national = self.layer(jurisdiction)
        if node_layer is not None and node_layer.node.jurisdiction is not jurisdiction:
            raise NodeLayerMismatch(node_layer.node, jurisdiction)
        named: list[tuple[str, Rules]] = [
            (self.baseline.name, self.baseline),
            (national.name, national),
        ]
        if node_layer is not None:
            named.append((_node_name(node_layer), node_layer))
        effective = _effective(
            (jurisdiction,),
            named,
            hdabs=(national.hdab,),
            issuers=national.issuers,
            node=None if node_layer is None else node_layer.node,
        )
        if node_layer is None:
            self._composed[jurisdiction] = effective
        return effective

    def strictest(
        self,
        jurisdictions: Iterable[Jurisdiction],
        node_layers: Mapping[Jurisdiction, NodeLayer] | None = None,
    ) -> EffectivePolicy:
        """The policy a cell must satisfy when all these jurisdictions contribute to it: the
        composition of all their layers (the same function as for one jurisdiction)."""
        wanted = sorted(set(jurisdictions), key=list(Jurisdiction).index)
        if not wanted:
            raise ValueError("strictest() needs at least one jurisdiction")
        node_layers = node_layers or {}
        named: list[tuple[str, Rules]] = [(self.baseline.name, self.baseline)]
        hdabs: list[Hdab] = []
        trusted: set[str] | None = None
        for j in wanted:
            national = self.layer(j)
            named.append((national.name, national))
            hdabs.append(national.hdab)
            own = {issuer.iss for issuer in national.issuers}
            trusted = own if trusted is None else trusted & own
            if (node_layer := node_layers.get(j)) is not None:
                if node_layer.node.jurisdiction is not j:
                    raise NodeLayerMismatch(node_layer.node, j)
                named.append((_node_name(node_layer), node_layer))
        # An approval must be acceptable to every contributor: keep the issuers all trust.
        issuers = tuple(
            issuer
            for issuer in _unique_issuers(self.layer(j).issuers for j in wanted)
            if issuer.iss in (trusted or set())
        )
        return _effective(tuple(wanted), named, hdabs=tuple(hdabs), issuers=issuers, node=None)

    def policies(
        self, jurisdictions: Iterable[Jurisdiction], node_layer: NodeLayer | None = None
    ) -> dict[Jurisdiction, EffectivePolicy]:
        """Effective policies of those jurisdictions that have one, for `decide`. A node layer
        applies to its own jurisdiction only."""
        found: dict[Jurisdiction, EffectivePolicy] = {}
        for j in jurisdictions:
            if j not in self.jurisdictions:
                continue
            own = (
                node_layer if node_layer is not None and node_layer.node.jurisdiction is j else None
            )
            found[j] = self.effective(j, own)
        return found

    def with_issuers(self, extra: Mapping[Jurisdiction, Sequence[Issuer]]) -> PolicySet:
        """A copy that also trusts these issuers. Trust anchors are deployment configuration
        (which HDAB keys a federation accepts), not a rule that layers tighten; this is how a
        composition root adds them, e.g. the demo's issuer."""
        layers = dict(self.jurisdictions)
        for j, issuers in extra.items():
            national = self.layer(j)
            known = {issuer.iss for issuer in national.issuers}
            added = tuple(issuer for issuer in issuers if issuer.iss not in known)
            layers[j] = national.model_copy(update={"issuers": (*national.issuers, *added)})
        return replace(self, jurisdictions=layers)


def _unique_issuers(groups: Iterable[Iterable[Issuer]]) -> list[Issuer]:
    seen: dict[str, Issuer] = {}
    for group in groups:
        for issuer in group:
            seen.setdefault(issuer.iss, issuer)
    return list(seen.values())


def _effective(
    jurisdictions: tuple[Jurisdiction, ...],
    named: Sequence[tuple[str, Rules]],
    *,
    hdabs: tuple[Hdab, ...],
    issuers: tuple[Issuer, ...],
    node: LayerNode | None,
) -> EffectivePolicy:
    composed = compose_with_provenance([rules for _, rules in named])
    names = tuple(name for name, _ in named)
    provenance: dict[RulePath, tuple[str, ...]] = {
        path: tuple(dict.fromkeys(names[i] for i in indices))
        for path, indices in composed.provenance.items()
    }
    return EffectivePolicy(
        jurisdictions=jurisdictions,
        layers=names,
        rules=composed.rules,
        provenance=provenance,
        hdabs=hdabs,
        issuers=issuers,
        node=node,
    )
