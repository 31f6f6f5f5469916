"""Effective policies and profiles are composed once and remembered: what is remembered must be
exactly what composing anew gives, and a changed policy set must not see the old answers."""

from __future__ import annotations

from policies.loader import load_policy_set
from policies.model import Issuer
from policies.policy_set import PolicySet
from policies.profiles import DisclosureProfile, strictest
from schema.codes import Jurisdiction as J
from tests.policies.policy_kit import node_layer, sourced

ISSUER = "https://hdab.memo.test.tessera.eu"


def test_a_remembered_policy_is_what_composing_anew_gives(shipped: PolicySet) -> None:
    first = shipped.effective(J.FR)
    assert shipped.effective(J.FR) is first
    assert load_policy_set().effective(J.FR) == first
    assert shipped.profile(J.FR) is shipped.profile(J.FR)
    assert shipped.profile(J.FR) == first.disclosure_profile()


def test_a_copy_with_more_issuers_composes_its_own_policy(shipped: PolicySet) -> None:
    before = shipped.effective(J.FR)  # remembered by the original set
    extended = shipped.with_issuers({J.FR: [Issuer(iss=ISSUER, algorithms=("EdDSA",))]})
    assert ISSUER in {issuer.iss for issuer in extended.effective(J.FR).issuers}
    assert ISSUER not in {issuer.iss for issuer in before.issuers}
    assert shipped.effective(J.FR) is before


def test_a_node_layer_is_never_answered_from_memory(shipped: PolicySet) -> None:
    national = shipped.effective(J.FR)
    stricter = node_layer(J.FR, disclosure={"min_count": sourced(50)})
    with_node = shipped.effective(J.FR, stricter)
    assert with_node.min_count == 50
    assert with_node.node is not None
    # ...and composing it did not replace the national policy remembered for FR.
    assert shipped.effective(J.FR) is national
    assert shipped.effective(J.FR).min_count == national.min_count != 50


def _profile(min_count: int, sigma: float, verified: bool) -> DisclosureProfile:
    return DisclosureProfile(
        min_count=min_count, sigma=sigma, source=f"rule {min_count}", verified=verified
    )


def test_strictest_of_one_profile_is_that_profile() -> None:
    only = _profile(5, 5.0, True)
    assert strictest([only]) is only


def test_strictest_remembers_by_the_profiles_given_not_their_values() -> None:
    loose, strict = (
        _profile(5, 5.0, True),
        _profile(11, 8.0, False),
    )
    pooled = strictest([loose, strict])
    assert (pooled.min_count, pooled.sigma, pooled.verified) == (11, 8.0, False)
    assert strictest([loose, strict]) is pooled
    # Equal values in other objects give an equal answer, whether remembered or not.
    again = strictest([_profile(5, 5.0, True), _profile(11, 8.0, False)])
    assert again == pooled
    both_loose = strictest([loose, _profile(3, 5.0, True)])
    assert (both_loose.min_count, both_loose.sigma, both_loose.verified) == (
        5,
        5.0,
        True,
    )
