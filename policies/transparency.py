"""Publishing the rules: each jurisdiction's effective policy with the source of every rule
(for the gateway's public `policies` query), and the check of a policy directory that
`tessera policy check DIR` prints.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from policies.compose import LAWS, rule_at_least_as_strict
from policies.loader import (
    BASELINE_FILE,
    PolicyErrorCode,
    PolicyFileError,
    PolicyIssue,
    jurisdiction_files,
    key_lines,
    load_jurisdiction,
    load_model,
    locate,
    read_toml,
)
from policies.model import (
    RULE_PATHS,
    BaselineLayer,
    Budget,
    Dominance,
    Hdab,
    JurisdictionLayer,
    NodeLayer,
    Noise,
    PolicyModel,
    Rules,
    SecurePooling,
    dotted,
)
from policies.policy_set import EffectivePolicy, PolicySet
from policies.profiles import COARSE_FACTOR
from schema.codes import Jurisdiction

INEFFECTIVE_RULE: Final = "INEFFECTIVE_RULE"


# -- published rules ------------------------------------------------------------------------
class PublishedRule(PolicyModel):
    rule: str  # dotted path, e.g. "disclosure.min_count"
    value: str  # rendered for people: "11", "SUPPRESS", "[SEX, AGE_BAND_10]"
    source: str
    verified: bool
    layers: tuple[str, ...]  # the layers the value comes from
    order: str  # what "stricter" means for this rule


class PublishedPolicy(PolicyModel):
    jurisdiction: Jurisdiction
    name: str
    hdab: Hdab
    issuers: tuple[str, ...]
    layers: tuple[str, ...]
    node: str | None = None
    rules: tuple[PublishedRule, ...]
    optout_mechanism: str | None = None

    @property
    def unverified(self) -> tuple[PublishedRule, ...]:
        return tuple(rule for rule in self.rules if not rule.verified)


def render_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, frozenset | set | tuple | list):
        return "[" + ", ".join(render_value(item) for item in _ordered(value)) + "]"
    if isinstance(value, Dominance):
        return f"n={value.n}, k={value.k:g}%"
    if isinstance(value, Noise):
        return f"sd {value.sigma:g} (coarse: {value.sigma * COARSE_FACTOR:g})"
    if isinstance(value, Budget):
        return f"rho {value.applicant:g} per applicant, {value.organisation:g} per organisation"
    if isinstance(value, SecurePooling):
        if not value.enabled:
            return "does not take part"
        return f"takes part in rounds of at least {value.min_nodes} nodes"
    return str(value)


def _ordered(items: Iterable[Any]) -> list[Any]:
    # Enum members in their declaration order (how the dimension and purpose lists are
    # written), anything else alphabetically: published output must not depend on set order.
    items = list(items)
    if items and all(isinstance(item, enum.Enum) for item in items):
        kind: type[enum.Enum] = type(items[0])
        order: dict[Any, int] = {member: i for i, member in enumerate(kind)}
        return sorted(items, key=lambda item: order.get(item, len(order)))
    return sorted(items, key=str)


def publish(policy: EffectivePolicy) -> PublishedPolicy:
    """One effective policy, rule by rule, with sources and the layers each comes from."""
    rules = []
    for path in RULE_PATHS:
        rule = policy.rules.rule(path)
        if rule is None:
            continue
        rules.append(
            PublishedRule(
                rule=dotted(path),
                value=render_value(rule.value),
                source=rule.source,
                verified=rule.verified,
                layers=tuple(policy.provenance.get(path, ())),
                order=LAWS[path].describe,
            )
        )
    jurisdiction = policy.jurisdictions[0]
    return PublishedPolicy(
        jurisdiction=jurisdiction,
        name=policy.layers[1] if len(policy.layers) > 1 else jurisdiction.value,
        hdab=policy.hdabs[0],
        issuers=tuple(issuer.iss for issuer in policy.issuers),
        layers=policy.layers,
        node=None if policy.node is None else policy.node.id,
        rules=tuple(rules),
        optout_mechanism=policy.rules.optout.mechanism,
    )


def published_policies(policies: PolicySet) -> list[PublishedPolicy]:
    """Every jurisdiction's effective rules with their sources, in `Jurisdiction` order."""
    return [publish(policies.effective(j)) for j in policies.covered]


# -- checking a policy directory ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PolicyWarning:
    """Not an error, but probably not what the author meant: e.g. a national value looser
    than the baseline, which therefore has no effect."""

    file: str
    line: int | None
    key: str
    code: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message} [{self.code}]"


@dataclass(frozen=True, slots=True)
class PolicyReport:
    directory: str
    files: tuple[str, ...]
    issues: tuple[PolicyIssue, ...]
    warnings: tuple[PolicyWarning, ...]
    policies: tuple[PublishedPolicy, ...]

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def render(self) -> str:
        return render_report(self)


L = TypeVar("L", bound=Rules)


@dataclass(frozen=True, slots=True)
class _Loaded(Generic[L]):
    layer: L
    file: str
    text: str


def check_policy_dir(directory: Path) -> PolicyReport:
    """Validate every file of a policy directory (`eu.toml`, `jurisdictions/*.toml`, and any
    other top-level `*.toml` as a node layer) and compute each effective policy. Problems are
    collected, not raised: the report lists them all."""
    if not directory.is_dir():
        issue = PolicyIssue(
            str(directory), None, "", PolicyErrorCode.MISSING_FILE, "not a directory"
        )
        return PolicyReport(str(directory), (), (issue,), (), ())

    issues: list[PolicyIssue] = []
    files: list[str] = []

    def attempt(path: Path, model: type[L]) -> _Loaded[L] | None:
        name = path.relative_to(directory).as_posix()
        files.append(name)
        try:
            layer = (
                load_jurisdiction(path, root=directory)
                if model is JurisdictionLayer
                else load_model(path, model, root=directory)
            )
            _, text = read_toml(path, root=directory)
        except PolicyFileError as exc:
            issues.extend(exc.issues)
            return None
        assert isinstance(layer, model)
        return _Loaded(layer, name, text)

    baseline = attempt(directory / BASELINE_FILE, BaselineLayer)
    nationals = {
        loaded.layer.jurisdiction: loaded
        for path in jurisdiction_files(directory)
        if (loaded := attempt(path, JurisdictionLayer)) is not None
    }
    nodes = [
        node
        for path in sorted(directory.glob("*.toml"))
        if path.name != BASELINE_FILE and (node := attempt(path, NodeLayer)) is not None
    ]

    warnings: list[PolicyWarning] = []
    published: list[PublishedPolicy] = []
    if baseline is not None:
        policy_set = PolicySet(
            baseline=baseline.layer,
            jurisdictions={j: loaded.layer for j, loaded in nationals.items()},
        )
        for j in policy_set.covered:
            effective = policy_set.effective(j)
            warnings.extend(_ineffective(nationals[j], effective, baseline.layer.name))
            published.append(publish(effective))
        for node in nodes:
            j = node.layer.node.jurisdiction
            if j not in nationals:
                issues.append(
                    PolicyIssue(
                        node.file,
                        locate(key_lines(node.text), ("node", "jurisdiction")),
                        "node.jurisdiction",
                        PolicyErrorCode.INVALID_VALUE,
                        f"no policy file for {j.value} in this directory",
                    )
                )
                continue
            effective = policy_set.effective(j, node.layer)
            warnings.extend(_ineffective(node, effective, "its jurisdiction's layers"))
            published.append(publish(effective))
    return PolicyReport(
        directory=str(directory),
        files=tuple(files),
        issues=tuple(issues),
        warnings=tuple(warnings),
        policies=tuple(published),
    )


def _ineffective(
    loaded: _Loaded[Any], effective: EffectivePolicy, others: str
) -> list[PolicyWarning]:
    """Rules a layer states that the composition overrides with something stricter."""
    lines = key_lines(loaded.text)
    warnings = []
    for path, rule in loaded.layer.rules().items():
        result = effective.rules.rule(path)
        if rule_at_least_as_strict(path, rule, result):
            continue
        assert result is not None  # the composition is at least as strict as every layer
        warnings.append(
            PolicyWarning(
                loaded.file,
                locate(lines, path),
                dotted(path),
                INEFFECTIVE_RULE,
                f"{render_value(rule.value)} has no effect: {others} require "
                f"{render_value(result.value)}",
            )
        )
    return warnings


# -- rendering ------------------------------------------------------------------------------
def render_report(report: PolicyReport) -> str:
    out = [
        f"Policy directory: {report.directory}",
        f"{len(report.files)} files, {len(report.issues)} errors, {len(report.warnings)} warnings",
    ]
    if report.issues:
        out += ["", "Errors:", *(f"  {issue}" for issue in report.issues)]
    if report.warnings:
        out += ["", "Warnings:", *(f"  {warning}" for warning in report.warnings)]
    for policy in report.policies:
        out += ["", *render_policy(policy)]
    return "\n".join(out) + "\n"


def render_policy(policy: PublishedPolicy) -> list[str]:
    title = f"{policy.jurisdiction.value} — {policy.name}"
    if policy.node:
        title += f" (node {policy.node})"
    hdab = policy.hdab.name + (f" <{policy.hdab.url}>" if policy.hdab.url else "")
    lines = [
        title,
        "=" * len(title),
        f"HDAB: {hdab}{'' if policy.hdab.verified else '  [unverified]'}",
        f"Token issuers: {', '.join(policy.issuers) or 'none configured'}",
        f"Layers (strictest wins): {' → '.join(policy.layers)}",
    ]
    for rule in policy.rules:
        mark = "verified" if rule.verified else "UNVERIFIED"
        lines.append(f"  {rule.rule} = {rule.value}  ({mark}; from {', '.join(rule.layers)})")
        lines.append(f"      {rule.source}")
    if policy.optout_mechanism:
        lines.append(f"  opt-out: {policy.optout_mechanism}")
    unverified = len(policy.unverified)
    if unverified:
        lines.append(
            f"  {unverified} of {len(policy.rules)} rules must be confirmed by the HDAB "
            "before production."
        )
    return lines


def render_policies(policies: Sequence[PublishedPolicy]) -> str:
    return "\n\n".join("\n".join(render_policy(policy)) for policy in policies) + "\n"
