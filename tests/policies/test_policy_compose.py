"""Composition is the join of a partial order: the effective policy is never looser than any
layer, does not depend on order or grouping, and only tightens as layers are added."""

from __future__ import annotations

from itertools import permutations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.compose import (
    LAWS,
    at_least_as_strict,
    compose,
    compose_with_provenance,
    looser_rules,
    same_rules,
)
from policies.decision import decide
from policies.model import RULE_PATHS, Budget, Dominance, Noise, RulePath, Rules
from policies.policy_set import EffectivePolicy, IncompletePolicy, PolicySet
from policies.principal import ApplicantKind
from schema.codes import Dimension, Jurisdiction
from schema.dimensions import age_band_width
from tests.policies.policy_kit import (
    NOW,
    RESEARCHER,
    VALUES,
    approval,
    node_layer,
    plan,
    rules,
    sourced,
)

layers = st.lists(rules(), min_size=1, max_size=5)
PROPERTY = settings(max_examples=200, deadline=None)


# -- the order ------------------------------------------------------------------------------
@PROPERTY
@given(rules())
def test_order_is_reflexive(a: Rules) -> None:
    assert at_least_as_strict(a, a)


@PROPERTY
@given(rules(), rules(), rules())
def test_order_is_transitive(c: Rules, x: Rules, y: Rules) -> None:
    # Build a chain a ⪰ b ⪰ c by composition, then check the order sees a ⪰ c directly.
    b = compose([c, x])
    a = compose([b, y])
    assert at_least_as_strict(a, b)
    assert at_least_as_strict(b, c)
    assert at_least_as_strict(a, c)


@PROPERTY
@given(rules(), rules())
def test_order_is_antisymmetric(a: Rules, b: Rules) -> None:
    if at_least_as_strict(a, b) and at_least_as_strict(b, a):
        for path in RULE_PATHS:
            x, y = a.rule(path), b.rule(path)
            assert (x is None) == (y is None)
            if x is not None and y is not None:
                assert x.value == y.value


# -- composition is the join ----------------------------------------------------------------
@PROPERTY
@given(layers)
def test_composition_is_at_least_as_strict_as_every_layer(given_layers: list[Rules]) -> None:
    composed = compose(given_layers)
    for layer in given_layers:
        assert looser_rules(composed, layer) == []


@PROPERTY
@given(st.lists(rules(), min_size=1, max_size=4))
def test_composition_is_commutative(given_layers: list[Rules]) -> None:
    reference = compose(given_layers)
    for order in permutations(given_layers):
        assert same_rules(compose(order), reference)


@PROPERTY
@given(rules(), rules(), rules())
def test_composition_is_associative(a: Rules, b: Rules, c: Rules) -> None:
    flat = compose([a, b, c])
    assert same_rules(compose([compose([a, b]), c]), flat)
    assert same_rules(compose([a, compose([b, c])]), flat)


@PROPERTY
@given(rules())
def test_composition_is_idempotent(a: Rules) -> None:
    assert same_rules(compose([a]), a)
    assert same_rules(compose([a, a]), a)
    assert compose([a, a]) == compose([a])


@PROPERTY
@given(st.lists(rules(), max_size=4), rules())
def test_adding_a_layer_never_loosens(given_layers: list[Rules], extra: Rules) -> None:
    assert at_least_as_strict(compose([*given_layers, extra]), compose(given_layers))


@PROPERTY
@given(rules(), rules(), rules())
def test_composition_is_the_least_upper_bound(a: Rules, b: Rules, c: Rules) -> None:
    # Anything at least as strict as both layers is at least as strict as their composition:
    # composing never demands more than the layers do.
    upper = compose([a, b, c])
    assert at_least_as_strict(upper, compose([a, b]))
    if at_least_as_strict(c, a) and at_least_as_strict(c, b):
        assert at_least_as_strict(c, compose([a, b]))


@pytest.mark.parametrize("path", RULE_PATHS, ids=lambda p: ".".join(p))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_each_join_is_a_least_upper_bound(path: RulePath, data: st.DataObject) -> None:
    law = LAWS[path]
    x, y, z = (_value(path, data.draw(VALUES[path])) for _ in range(3))
    joined = law.join(x, y)
    assert law.at_least_as_strict(joined, x)
    assert law.at_least_as_strict(joined, y)
    assert law.join(x, y) == law.join(y, x)
    assert law.join(x, x) == x
    if law.at_least_as_strict(z, x) and law.at_least_as_strict(z, y):
        assert law.at_least_as_strict(z, joined)


def _value(path: RulePath, raw: Any) -> Any:
    """The validated value, as a layer would hold it."""
    section, name = path
    return Rules.model_validate({section: {name: sourced(raw)}}).rule(path).value  # type: ignore[union-attr]


def test_no_layer_states_no_rule() -> None:
    assert compose([]) == Rules()


def test_each_rule_has_a_law() -> None:
    assert set(LAWS) == set(RULE_PATHS)


# -- the individual orders -----------------------------------------------------------------
def _layer(path: RulePath, value: Any, source: str = "s", verified: bool = False) -> Rules:
    return Rules.model_validate({path[0]: {path[1]: sourced(value, source, verified)}})


@pytest.mark.parametrize(
    ("path", "values", "expected"),
    [
        (("disclosure", "min_count"), [11, 5, 3], 11),
        (("disclosure", "rounding_base"), [5, 3], 15),
        (("disclosure", "rounding_base"), [10, 5], 10),
        (("disclosure", "noise"), [{"sigma": 5}, {"sigma": 8}, {"sigma": 2}], Noise(sigma=8)),
        (
            ("disclosure", "budget"),
            [{"applicant": 0.5, "organisation": 0.2}, {"applicant": 0.3, "organisation": 0.5}],
            Budget(applicant=0.3, organisation=0.2),
        ),
        (("disclosure", "dominance"), [{"n": 1, "k": 85}, {"n": 2, "k": 90}], Dominance(n=2, k=85)),
        (("dimensions", "allowed"), [["SEX", "AGE_BAND_10"], ["SEX"]], frozenset({Dimension.SEX})),
        (
            ("dimensions", "not_allowed"),
            [["CALENDAR_YEAR"], ["AGE_BAND_5"]],
            frozenset({Dimension.CALENDAR_YEAR, Dimension.AGE_BAND_5}),
        ),
        (("dimensions", "min_age_band_width"), [5, 10], 10),
        (("dimensions", "max_cells"), [10000, 2000], 2000),
        (("rate_limits", "per_approval_per_day"), [1000, 50], 50),
        (("approvals", "revoked"), [["DR-1"], ["DR-2"]], frozenset({"DR-1", "DR-2"})),
    ],
)
def test_strictest_value(path: RulePath, values: list[Any], expected: Any) -> None:
    composed = compose([_layer(path, value) for value in values]).rule(path)
    assert composed is not None
    assert composed.value == expected


def test_a_value_stated_by_one_layer_keeps_that_layers_source() -> None:
    path = ("disclosure", "min_count")
    composed = compose_with_provenance(
        [_layer(path, 3, "floor"), _layer(path, 11, "national", verified=True)]
    )
    rule = composed.rules.rule(path)
    assert rule is not None
    assert (rule.value, rule.source, rule.verified) == (11, "national", True)
    assert composed.provenance[path] == (1,)


def test_a_synthesised_value_cites_all_layers_and_is_verified_only_if_all_are() -> None:
    path = ("disclosure", "rounding_base")
    composed = compose_with_provenance(
        [_layer(path, 5, "a", verified=True), _layer(path, 3, "b", verified=False)]
    )
    rule = composed.rules.rule(path)
    assert rule is not None
    assert (rule.value, rule.source, rule.verified) == (15, "a; b", False)
    assert composed.provenance[path] == (0, 1)


def test_opt_out_mechanisms_are_all_kept() -> None:
    first = Rules.model_validate({"optout": {"mechanism": "national register"}})
    second = Rules.model_validate({"optout": {"mechanism": "node filter"}})
    assert compose([first, second]).optout.mechanism == "national register; node filter"


# -- across jurisdictions and nodes ---------------------------------------------------------
def test_a_cell_from_several_jurisdictions_gets_the_strictest_rules(shipped: PolicySet) -> None:
    pooled = shipped.strictest([Jurisdiction.DK, Jurisdiction.FR, Jurisdiction.DE])
    assert pooled.min_count == 11
    assert pooled.dominance == Dominance(n=1, k=85)  # Germany
    assert pooled.jurisdictions == (Jurisdiction.DK, Jurisdiction.FR, Jurisdiction.DE)
    for j in pooled.jurisdictions:
        assert at_least_as_strict(pooled.rules, shipped.effective(j).rules)


def test_strictest_is_the_same_function_as_one_jurisdiction(shipped: PolicySet) -> None:
    assert same_rules(
        shipped.strictest([Jurisdiction.FR]).rules, shipped.effective(Jurisdiction.FR).rules
    )


def test_strictest_of_nothing_is_an_error(shipped: PolicySet) -> None:
    with pytest.raises(ValueError, match="at least one"):
        shipped.strictest([])


def test_a_node_layer_cannot_loosen(shipped: PolicySet) -> None:
    loose = node_layer(
        disclosure={"min_count": sourced(1), "noise": sourced({"sigma": 1.0})},
        dimensions={"max_cells": sourced(1_000_000)},
    )
    national = shipped.effective(Jurisdiction.FR)
    with_node = shipped.effective(Jurisdiction.FR, loose)
    assert with_node.min_count == 11
    assert with_node.noise.sigma == national.noise.sigma
    assert with_node.max_cells == national.max_cells
    assert at_least_as_strict(with_node.rules, national.rules)


def test_an_effective_policy_must_be_complete() -> None:
    with pytest.raises(IncompletePolicy) as caught:
        EffectivePolicy(
            jurisdictions=(Jurisdiction.FR,), layers=("x",), rules=Rules(), provenance={}
        )
    assert ("disclosure", "min_count") in caught.value.missing


# -- decisions only tighten too -------------------------------------------------------------
# VALUE_BIN needs a question's variable, FOLLOW_UP its survival, which these plans do not have
# (their policy rules are the other dimensions').
tables = st.lists(
    st.lists(
        st.sampled_from(
            [d for d in Dimension if d not in (Dimension.VALUE_BIN, Dimension.FOLLOW_UP)]
        ),
        max_size=3,
        unique=True,
    ).map(tuple),
    max_size=3,
).filter(lambda ts: all(sum(1 for d in t if age_band_width(d)) <= 1 for t in ts))


@settings(max_examples=150, deadline=None)
@given(
    extra=rules(),
    chosen=tables,
    purpose=st.sampled_from(
        ["scientific_research", "public_health", "education", "marketing", "astrology"]
    ),
    kind=st.sampled_from([*ApplicantKind, None]),
)
def test_adding_a_layer_never_turns_a_refusal_into_an_allowance(
    shipped: PolicySet,
    extra: Rules,
    chosen: list[tuple[Dimension, ...]],
    purpose: str,
    kind: ApplicantKind | None,
) -> None:
    loose = shipped.effective(Jurisdiction.FR)
    node = node_layer(**extra.model_dump(exclude_none=True, exclude_defaults=True, mode="json"))
    strict = shipped.effective(Jurisdiction.FR, node)
    asked = plan(*chosen, jurisdictions=(Jurisdiction.FR,))
    given_approval = approval(purpose=purpose, kind=kind)

    def refused(policy: EffectivePolicy) -> frozenset[str]:
        decisions = decide(RESEARCHER, given_approval, asked, {Jurisdiction.FR: policy}, now=NOW)
        return decisions[Jurisdiction.FR].rules

    assert refused(strict) >= refused(loose)
