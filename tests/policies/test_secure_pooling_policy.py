"""`disclosure.secure_pooling`: taking part is a permission a layer can withdraw but never
grant beyond the baseline, and a larger minimum of nodes is stricter; the profile a node and
the gateway read; what the shipped files say."""

from __future__ import annotations

from typing import Any

import pytest

from policies.compose import LAWS, compose
from policies.loader import load_policy_set
from policies.model import Rules, SecurePooling
from policies.profiles import BASELINE, strictest
from policies.transparency import publish, render_value
from schema.codes import Jurisdiction
from tests.policies.policy_kit import node_layer, sourced

PATH = ("disclosure", "secure_pooling")
SHIPPED = load_policy_set()


def layer(enabled: bool, min_nodes: int) -> Rules:
    return Rules.model_validate(
        {"disclosure": {"secure_pooling": sourced({"enabled": enabled, "min_nodes": min_nodes})}}
    )


@pytest.mark.parametrize(
    ("a", "b", "joined"),
    [
        ((True, 2), (True, 3), (True, 3)),
        ((True, 5), (False, 2), (False, 5)),
        ((False, 2), (False, 4), (False, 4)),
    ],
)
def test_staying_out_and_more_nodes_win(
    a: tuple[bool, int], b: tuple[bool, int], joined: tuple[bool, int]
) -> None:
    rule = compose([layer(*a), layer(*b)]).disclosure.secure_pooling
    assert rule is not None
    assert (rule.value.enabled, rule.value.min_nodes) == joined


def test_the_order_makes_taking_part_the_looser_value() -> None:
    law = LAWS[PATH]
    out, in_ = SecurePooling(enabled=False, min_nodes=2), SecurePooling(enabled=True, min_nodes=2)
    assert law.at_least_as_strict(out, in_)
    assert not law.at_least_as_strict(in_, out)
    more = SecurePooling(enabled=True, min_nodes=4)
    assert law.at_least_as_strict(more, in_)
    assert not law.at_least_as_strict(in_, more)


@pytest.mark.parametrize("value", [{"enabled": True, "min_nodes": 1}, {"enabled": "yes"}])
def test_a_malformed_rule_is_refused(value: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="secure_pooling"):
        Rules.model_validate({"disclosure": {"secure_pooling": sourced(value)}})


def test_the_shipped_jurisdictions_take_part_in_rounds_of_three() -> None:
    for jurisdiction in SHIPPED.covered:
        profile = SHIPPED.profile(jurisdiction)
        assert profile.secure_pooling, jurisdiction
        assert profile.pool_min_nodes == 3, jurisdiction


def test_a_node_layer_can_stay_out_or_ask_for_more_nodes() -> None:
    out = SHIPPED.effective(
        Jurisdiction.FR,
        node_layer(disclosure={"secure_pooling": sourced({"enabled": False, "min_nodes": 2})}),
    ).disclosure_profile()
    assert not out.secure_pooling
    assert out.pool_min_nodes == 3  # the national minimum still binds
    more = SHIPPED.effective(
        Jurisdiction.FR,
        node_layer(disclosure={"secure_pooling": sourced({"enabled": True, "min_nodes": 5})}),
    ).disclosure_profile()
    assert more.secure_pooling
    assert more.pool_min_nodes == 5


def test_without_any_statement_nobody_pools() -> None:
    assert not BASELINE.secure_pooling


def test_a_pooled_cell_pools_only_if_every_contributor_does() -> None:
    fr, de = SHIPPED.profile(Jurisdiction.FR), SHIPPED.profile(Jurisdiction.DE)
    staying_out = de.model_copy(update={"secure_pooling": False, "pool_min_nodes": 4})
    assert strictest([fr, de]).secure_pooling
    combined = strictest([fr, staying_out])
    assert not combined.secure_pooling
    assert combined.pool_min_nodes == 4
    assert combined.is_stricter_or_equal(fr)
    assert not fr.is_stricter_or_equal(combined)


def test_the_rule_is_published_with_its_source() -> None:
    published = {r.rule: r for r in publish(SHIPPED.effective(Jurisdiction.DK)).rules}
    rule = published["disclosure.secure_pooling"]
    assert rule.value == "takes part in rounds of at least 3 nodes"
    assert rule.verified is False
    assert "Denmark" in rule.source
    assert render_value(SecurePooling(enabled=False, min_nodes=2)) == "does not take part"
