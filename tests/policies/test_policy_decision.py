"""The decision: every refusal path, the happy path for every purpose, and the same function
at the gateway (all jurisdictions) and at a connector (its own, plus its node layer)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

import pytest

from policies.checks import CHECKS, PRODUCTION_CHECKS, CheckInput
from policies.decision import decide
from policies.domain import dimension_cells, table_cells
from policies.loader import DEFAULT_DIRECTORY, load_node_layer
from policies.model import Issuer, NodeLayer
from policies.plan import QueryPlan
from policies.policy_set import EffectivePolicy, PolicySet
from policies.principal import ApplicantKind, ApprovalView, ResearcherView
from policies.purposes import PROHIBITED, PURPOSES, ProhibitedUse, Purpose, classify_purpose
from policies.reasons import AccessDecision, Decisions, PolicyReason, RuleId
from schema.approval import Approval
from schema.codes import Dimension, Jurisdiction
from schema.query import FederatedQuery
from schema.result import Reason
from schema.wire import NodeRequest
from tests.policies.policy_kit import (
    DATASET,
    NOW,
    REQUEST,
    RESEARCHER,
    approval,
    node_layer,
    plan,
    sourced,
    with_rule,
)

J = Jurisdiction
D = Dimension
FR_DE = (J.FR, J.DE)
ISSUER = "https://hdab.example.eu"
Policies = dict[Jurisdiction, EffectivePolicy]


def run(
    policies: Mapping[Jurisdiction, EffectivePolicy],
    *,
    given: ApprovalView | None = None,
    asked: QueryPlan | None = None,
    principal: ResearcherView = RESEARCHER,
    **kwargs: object,
) -> Decisions:
    return decide(
        principal,
        given or approval(),
        asked or plan(),
        policies,
        now=kwargs.pop("now", NOW),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def rules(decisions: Decisions, jurisdiction: Jurisdiction) -> set[str]:
    return set(decisions[jurisdiction].rules)


def only(decisions: Decisions, jurisdiction: Jurisdiction) -> PolicyReason:
    (reason,) = decisions[jurisdiction].reasons
    return reason


@pytest.fixture
def gateway(shipped: PolicySet) -> dict[Jurisdiction, EffectivePolicy]:
    return shipped.policies(FR_DE)


@pytest.fixture
def example_node() -> NodeLayer:
    return load_node_layer(DEFAULT_DIRECTORY / "node.example.toml")


# -- the happy path -------------------------------------------------------------------------
@pytest.mark.parametrize("purpose", list(Purpose))
def test_every_purpose_is_allowed_for_a_public_body(gateway: Policies, purpose: Purpose) -> None:
    decisions = run(gateway, given=approval(purpose=purpose.value, kind=ApplicantKind.PUBLIC_BODY))
    assert decisions.allowed
    assert decisions.allowed_jurisdictions == FR_DE
    assert decisions.reasons() == []


@pytest.mark.parametrize(
    "purpose", [Purpose.EDUCATION, Purpose.SCIENTIFIC_RESEARCH, Purpose.CARE_IMPROVEMENT]
)
@pytest.mark.parametrize("kind", [ApplicantKind.PRIVATE_ENTITY, ApplicantKind.NATURAL_PERSON])
def test_open_purposes_are_allowed_for_anyone(
    gateway: Policies, purpose: Purpose, kind: ApplicantKind
) -> None:
    assert run(gateway, given=approval(purpose=purpose.value, kind=kind)).allowed


def test_a_breakdown_within_the_rules_is_allowed(gateway: Policies) -> None:
    asked = plan((D.JURISDICTION, D.AGE_BAND_10), (D.SEX, D.AGE_BAND_20))
    assert run(gateway, asked=asked).allowed


# -- purposes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "purpose", [Purpose.PUBLIC_HEALTH, Purpose.POLICY_MAKING, Purpose.OFFICIAL_STATISTICS]
)
@pytest.mark.parametrize("kind", [ApplicantKind.PRIVATE_ENTITY, ApplicantKind.NATURAL_PERSON, None])
def test_public_body_only_purposes_are_refused_to_others(
    gateway: Policies, purpose: Purpose, kind: ApplicantKind | None
) -> None:
    decisions = run(gateway, given=approval(purpose=purpose.value, kind=kind))
    assert not decisions.allowed
    for j in FR_DE:
        reason = only(decisions, j)
        assert reason.rule == RuleId.PURPOSE_PUBLIC_BODY_ONLY
        assert reason.article == "EHDS Art. 53(2)"
        assert reason.jurisdiction is j


@pytest.mark.parametrize("use", list(ProhibitedUse))
@pytest.mark.parametrize("kind", list(ApplicantKind))
def test_prohibited_uses_are_refused_whoever_asks(
    gateway: Policies, use: ProhibitedUse, kind: ApplicantKind
) -> None:
    decisions = run(gateway, given=approval(purpose=use.value, kind=kind))
    for j in FR_DE:
        reason = only(decisions, j)
        assert reason.rule == RuleId.PURPOSE_PROHIBITED
        assert reason.article == PROHIBITED[use].article
        assert reason.article.startswith("EHDS Art. 54(")


@pytest.mark.parametrize(
    "claim", ["marketing", "advertising", "insurance_pricing", "credit_scoring"]
)
def test_prohibited_uses_are_recognised_under_other_names(gateway: Policies, claim: str) -> None:
    decisions = run(gateway, given=approval(purpose=claim, kind=ApplicantKind.PUBLIC_BODY))
    assert only(decisions, J.FR).rule == RuleId.PURPOSE_PROHIBITED


@pytest.mark.parametrize("claim", ["astrology", "curiosity", "scientific"])
def test_an_unknown_purpose_is_refused(gateway: Policies, claim: str) -> None:
    reason = only(run(gateway, given=approval(purpose=claim)), J.FR)
    assert (reason.rule, reason.article) == (RuleId.PURPOSE_UNKNOWN, "EHDS Art. 53(1)")


def test_a_jurisdiction_can_restrict_purposes(shipped: PolicySet) -> None:
    without_education = node_layer(
        J.DE,
        purposes={"allowed": sourced(["scientific_research"], "national restriction")},
    )
    policies = {J.FR: shipped.effective(J.FR), J.DE: shipped.effective(J.DE, without_education)}
    decisions = run(policies, given=approval(purpose="education"))
    assert decisions[J.FR].allowed
    reason = only(decisions, J.DE)
    assert (reason.rule, reason.article) == (RuleId.PURPOSE_NOT_ALLOWED, "national restriction")
    assert decisions.allowed_jurisdictions == (J.FR,)


def test_a_jurisdiction_can_reserve_more_purposes_to_public_bodies(shipped: PolicySet) -> None:
    reserved = node_layer(
        J.FR, purposes={"public_body_only": sourced(["scientific_research"], "national law X")}
    )
    policies = {J.FR: shipped.effective(J.FR, reserved)}
    reason = only(run(policies, asked=plan(jurisdictions=(J.FR,))), J.FR)
    assert reason.rule == RuleId.PURPOSE_PUBLIC_BODY_ONLY
    assert reason.article is not None
    assert "national law X" in reason.article
    public = approval(kind=ApplicantKind.PUBLIC_BODY)
    assert run(policies, given=public, asked=plan(jurisdictions=(J.FR,))).allowed


def test_the_law_holds_even_if_a_file_forgets_it(shipped: PolicySet) -> None:
    # A baseline that drops Art. 53(2) cannot open public-health purposes to companies.
    baseline = with_rule(shipped.baseline, ("purposes", "public_body_only"), [])
    forgetful = PolicySet(baseline=baseline, jurisdictions=shipped.jurisdictions)
    decisions = run(forgetful.policies(FR_DE), given=approval(purpose="public_health"))
    assert only(decisions, J.FR).rule == RuleId.PURPOSE_PUBLIC_BODY_ONLY


def test_purpose_catalogue_is_complete() -> None:
    assert set(PURPOSES) == set(Purpose)
    assert [PURPOSES[p].article[-3:] for p in Purpose] == [f"({letter})" for letter in "abcdef"]
    assert [PROHIBITED[u].article[-3:] for u in ProhibitedUse] == [
        f"({letter})" for letter in "abcde"
    ]
    assert classify_purpose("scientific_research").purpose is PURPOSES[Purpose.SCIENTIFIC_RESEARCH]
    assert (
        classify_purpose("marketing").prohibited is PROHIBITED[ProhibitedUse.ADVERTISING_MARKETING]
    )


# -- the approval ---------------------------------------------------------------------------
def test_a_query_under_another_request_is_refused(gateway: Policies) -> None:
    decisions = run(gateway, asked=plan(request_id="DR-2026-9999"))
    for j in FR_DE:
        reason = only(decisions, j)
        assert (reason.rule, reason.article) == (RuleId.REQUEST_MISMATCH, "EHDS Art. 69")


def test_a_question_may_name_the_application_instead_of_the_request(gateway: Policies) -> None:
    # One multi-country application, one permit per HDAB under its own request id.
    permit = approval(request_id="DR-FR-0007", application_id="APP-2026-0042")
    assert run(gateway, given=permit, asked=plan(request_id="APP-2026-0042")).allowed
    assert run(gateway, given=permit, asked=plan(request_id="DR-FR-0007")).allowed
    refused = run(gateway, given=permit, asked=plan(request_id="APP-2026-9999"))
    assert rules(refused, J.FR) == {RuleId.REQUEST_MISMATCH}
    # Without an application, only the request itself matches.
    assert not run(gateway, given=approval(), asked=plan(request_id="APP-2026-0042")).allowed


def test_a_jurisdiction_outside_the_approval_is_refused(gateway: Policies) -> None:
    decisions = run(gateway, given=approval(jurisdictions=(J.FR,)))
    assert decisions[J.FR].allowed
    reason = only(decisions, J.DE)
    assert (reason.rule, reason.jurisdiction) == (RuleId.APPROVAL_SCOPE, J.DE)
    assert not decisions.allowed


def test_an_approval_for_another_jurisdiction_only_is_refused(gateway: Policies) -> None:
    decisions = run(gateway, given=approval(jurisdictions=(J.IT,)))
    assert decisions.allowed_jurisdictions == ()
    assert {r.rule for r in decisions.reasons()} == {RuleId.APPROVAL_SCOPE}


@pytest.mark.parametrize(
    ("valid_until", "expired"),
    [
        (NOW - dt.timedelta(seconds=1), True),
        (NOW, True),  # like a JWT's exp: no longer valid at that instant
        (NOW + dt.timedelta(seconds=1), False),
    ],
)
def test_an_expired_approval_is_refused(
    gateway: Policies, valid_until: dt.datetime, expired: bool
) -> None:
    decisions = run(gateway, given=approval(valid_until=valid_until))
    assert decisions.allowed is not expired
    if expired:
        reason = only(decisions, J.FR)
        assert (reason.rule, reason.article) == (RuleId.APPROVAL_EXPIRED, "EHDS Art. 69")


@pytest.mark.parametrize(
    ("valid_from", "early"),
    [(NOW + dt.timedelta(seconds=1), True), (NOW, False), (NOW - dt.timedelta(days=1), False)],
)
def test_an_approval_not_yet_valid_is_refused(
    gateway: Policies, valid_from: dt.datetime, early: bool
) -> None:
    decisions = run(gateway, given=approval(valid_from=valid_from))
    assert decisions.allowed is not early
    if early:
        assert only(decisions, J.DE).rule == RuleId.APPROVAL_NOT_YET_VALID


def test_an_approval_without_a_window_is_bounded_by_its_token_only(gateway: Policies) -> None:
    assert run(gateway, given=approval(valid_from=None, valid_until=None)).allowed


def test_naive_times_are_read_as_utc(gateway: Policies) -> None:
    naive_past = (NOW - dt.timedelta(hours=1)).replace(tzinfo=None)
    decisions = run(gateway, given=approval(valid_until=naive_past))
    assert only(decisions, J.FR).rule == RuleId.APPROVAL_EXPIRED
    # `now` in another zone is the same instant.
    paris = dt.timezone(dt.timedelta(hours=2))
    assert run(gateway, now=NOW.astimezone(paris)).allowed


def test_decide_needs_an_aware_now(gateway: Policies) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(gateway, now=NOW.replace(tzinfo=None))


def test_a_revoked_approval_is_refused(shipped: PolicySet, example_node: NodeLayer) -> None:
    # The example node layer revokes DR-2025-0007.
    policies = shipped.policies(FR_DE, example_node)
    given = approval(request_id="DR-2025-0007")
    decisions = run(policies, given=given, asked=plan(request_id="DR-2025-0007"))
    reason = only(decisions, J.FR)
    assert reason.rule == RuleId.APPROVAL_REVOKED
    assert reason.article == "HDAB revocation notice forwarded to the hub"
    assert decisions[J.DE].allowed  # the node layer is France's only


def test_a_nationally_revoked_approval_is_refused_at_the_gateway(shipped: PolicySet) -> None:
    layer = shipped.layer(J.DE)
    revoked = with_rule(layer, ("approvals", "revoked"), [REQUEST])
    policies = PolicySet(shipped.baseline, {**shipped.jurisdictions, J.DE: revoked}).policies(FR_DE)
    decisions = run(policies)
    assert decisions.allowed_jurisdictions == (J.FR,)
    assert only(decisions, J.DE).rule == RuleId.APPROVAL_REVOKED


def test_an_untrusted_issuer_is_refused(shipped: PolicySet) -> None:
    trusted_fr = shipped.with_issuers({J.FR: [Issuer(iss=ISSUER, algorithms=("EdDSA",))]}).policies(
        FR_DE
    )
    decisions = run(trusted_fr, principal=ResearcherView("r", issuer=ISSUER))
    assert decisions[J.FR].allowed
    reason = only(decisions, J.DE)
    assert (reason.rule, reason.article) == (RuleId.ISSUER_NOT_TRUSTED, "EHDS Art. 55")
    # Without an issuer to check, the caller's own token verification is what counts.
    assert run(trusted_fr, principal=ResearcherView("r")).allowed


def test_with_issuers_does_not_duplicate(shipped: PolicySet) -> None:
    issuer = Issuer(iss=ISSUER, algorithms=("EdDSA",))
    twice = shipped.with_issuers({J.FR: [issuer]}).with_issuers({J.FR: [issuer]})
    assert twice.layer(J.FR).issuers == (issuer,)
    assert shipped.layer(J.FR).issuers == ()  # the original is unchanged


def test_datasets_must_be_approved(shipped: PolicySet, example_node: NodeLayer) -> None:
    # At a connector, the node layer names the dataset it answers from.
    at_node = {J.FR: shipped.effective(J.FR, example_node)}
    asked = plan(jurisdictions=(J.FR,))
    assert run(at_node, asked=asked).allowed
    reason = only(run(at_node, given=approval(datasets=()), asked=asked), J.FR)
    assert reason.rule == RuleId.DATASET_NOT_APPROVED
    assert DATASET in reason.message
    # Anywhere, the plan may name the datasets it draws on: one of them named is enough.
    gateway = shipped.policies(FR_DE)
    assert run(gateway, asked=plan(datasets=frozenset({DATASET, "registry-x"}))).allowed
    other = plan(datasets=frozenset({"registry-x"}))
    assert {r.rule for r in run(gateway, asked=other).reasons()} == {RuleId.DATASET_NOT_APPROVED}
    # A permit that names no dataset at all names none the node serves.
    reason = only(run(gateway, given=approval(datasets=()), asked=other), J.FR)
    assert (reason.rule, reason.message) == (
        RuleId.DATASET_NOT_APPROVED,
        "the approval names none of the datasets FR serves here: registry-x",
    )


def test_without_known_datasets_the_decision_leaves_them_to_the_node(
    shipped: PolicySet,
) -> None:
    # A gateway that was told no node's datasets cannot check them; the node always can.
    assert run(shipped.policies(FR_DE), given=approval(datasets=())).allowed


# -- dimensions and granularity -------------------------------------------------------------
def test_a_dimension_a_jurisdiction_does_not_allow_is_refused(shipped: PolicySet) -> None:
    no_years = node_layer(
        J.DE,
        dimensions={"allowed": sourced(["JURISDICTION", "SEX", "AGE_BAND_10"], "DE restriction")},
    )
    policies = {J.FR: shipped.effective(J.FR), J.DE: shipped.effective(J.DE, no_years)}
    decisions = run(
        policies,
        asked=plan(
            (D.SEX, D.CALENDAR_YEAR),
            (D.AGE_BAND_20,),
            criteria={
                "conditions": [
                    {
                        "vocabulary": "ICD10",
                        "code": "E11",
                        "window": {"start": "2020-01-01", "end": "2024-12-31"},
                    }
                ]
            },
        ),
    )
    assert decisions[J.FR].allowed
    assert [(r.rule, r.article) for r in decisions[J.DE].reasons] == [
        (RuleId.DIMENSION_NOT_ALLOWED, "DE restriction"),
        (RuleId.DIMENSION_NOT_ALLOWED, "DE restriction"),
    ]
    assert "AGE_BAND_20" in decisions[J.DE].reasons[0].message
    assert "CALENDAR_YEAR" in decisions[J.DE].reasons[1].message


def test_a_dimension_a_layer_names_as_not_allowed_is_refused_with_that_source(
    shipped: PolicySet,
) -> None:
    # A layer states only what differs from the baseline: the one dimension it refuses.
    no_years = node_layer(
        J.DE, dimensions={"not_allowed": sourced(["CALENDAR_YEAR"], "DE: no calendar years")}
    )
    effective = shipped.effective(J.DE, no_years)
    assert effective.allowed_dimensions == frozenset(D) - {D.CALENDAR_YEAR}
    decisions = run(
        {J.FR: shipped.effective(J.FR), J.DE: effective},
        asked=plan((D.SEX, D.CALENDAR_YEAR), (D.AGE_BAND_20,)),
    )
    assert decisions[J.FR].allowed
    assert [(r.rule, r.article) for r in decisions[J.DE].reasons] == [
        (RuleId.DIMENSION_NOT_ALLOWED, "DE: no calendar years")
    ]
    assert "CALENDAR_YEAR" in decisions[J.DE].reasons[0].message


def test_age_bands_finer_than_the_minimum_width_are_refused(
    shipped: PolicySet, example_node: NodeLayer
) -> None:
    # The gateway allows 5-year bands in France; the example hub's minimum width is 10.
    fine = plan((D.AGE_BAND_5,), jurisdictions=(J.FR,))
    assert run(shipped.policies([J.FR]), asked=fine).allowed
    at_node = {J.FR: shipped.effective(J.FR, example_node)}
    reason = only(run(at_node, asked=fine), J.FR)
    assert reason.rule == RuleId.GRANULARITY
    assert "AGE_BAND_5" in reason.message
    assert "10" in reason.message
    assert run(at_node, asked=plan((D.AGE_BAND_10,), jurisdictions=(J.FR,))).allowed
    assert run(at_node, asked=plan((D.AGE_BAND_20,), jurisdictions=(J.FR,))).allowed


def test_a_table_with_too_many_cells_is_refused(gateway: Policies) -> None:
    huge = plan((D.CALENDAR_YEAR, D.SEX, D.AGE_BAND_5))  # open window: 201 * 2 * 27 cells
    decisions = run(gateway, asked=huge)
    assert only(decisions, J.FR).rule == RuleId.TABLE_TOO_LARGE
    bounded = plan(
        (D.CALENDAR_YEAR, D.SEX, D.AGE_BAND_5),
        criteria={
            "conditions": [
                {
                    "vocabulary": "ICD10",
                    "code": "E11",
                    "window": {"start": "2015-01-01", "end": "2024-12-31"},
                }
            ]
        },
    )
    assert run(gateway, asked=bounded).allowed


def test_cell_bounds() -> None:
    asked = plan(criteria={"sex": "FEMALE", "age": {"min": 40, "max": 69}}).query
    assert dimension_cells(D.JURISDICTION, asked) == 1
    assert dimension_cells(D.SEX, asked) == 1
    assert dimension_cells(D.AGE_BAND_10, asked) == 3
    assert dimension_cells(D.AGE_BAND_20, asked) == 2  # 40-59, 60-79
    assert dimension_cells(D.AGE_BAND_5, asked) == 6
    assert table_cells((D.SEX, D.AGE_BAND_10), asked) == 3
    anyone = plan().query
    assert dimension_cells(D.SEX, anyone) == 3  # and UNKNOWN
    assert dimension_cells(D.AGE_BAND_5, anyone) == 27  # ages 0..130
    # 1900 to the reference date's year (the criteria's condition dates everyone).
    assert dimension_cells(D.CALENDAR_YEAR, anyone) == anyone.reference_date.year - 1900 + 1
    assert table_cells((), anyone) == 1


# -- opt-out, production --------------------------------------------------------------------
@pytest.mark.parametrize(("applied", "allowed"), [(False, False), (True, True), (None, True)])
def test_a_node_that_cannot_apply_opt_outs_is_refused(
    gateway: Policies, applied: bool | None, allowed: bool
) -> None:
    decisions = run(gateway, optout_applied=applied)
    assert decisions.allowed is allowed
    if not allowed:
        reason = only(decisions, J.FR)
        assert (reason.rule, reason.article) == (RuleId.OPTOUT_NOT_APPLIED, "EHDS Art. 71")


def test_production_refuses_unconfirmed_rules(gateway: Policies) -> None:
    assert run(gateway).allowed
    decisions = run(gateway, checks=PRODUCTION_CHECKS)
    reason = only(decisions, J.DE)
    assert reason.rule == RuleId.POLICY_UNVERIFIED
    assert "disclosure.min_count" in reason.message  # DE's 3 is unverified


# -- fail closed ----------------------------------------------------------------------------
def test_a_jurisdiction_without_a_policy_is_refused(gateway: Policies) -> None:
    decisions = run(
        gateway, asked=plan(jurisdictions=(J.FR, J.AT)), given=approval(jurisdictions=(J.FR, J.AT))
    )
    assert decisions[J.FR].allowed
    assert only(decisions, J.AT).rule == RuleId.NO_POLICY
    assert run({}, asked=plan()).allowed_jurisdictions == ()


def test_no_jurisdiction_is_no_allowance() -> None:
    assert not Decisions(()).allowed


def test_a_broken_check_refuses(gateway: Policies) -> None:
    def broken(_: CheckInput) -> Iterator[PolicyReason]:
        raise RuntimeError("bug")

    decisions = run(gateway, checks=(*CHECKS, broken))
    reason = only(decisions, J.FR)
    assert reason.rule == RuleId.CHECK_FAILED
    assert "broken" in reason.message
    assert "bug" not in reason.message


def test_every_problem_is_reported_at_once(shipped: PolicySet, example_node: NodeLayer) -> None:
    at_node = {J.FR: shipped.effective(J.FR, example_node)}
    given = approval(
        purpose="official_statistics",
        kind=ApplicantKind.PRIVATE_ENTITY,
        jurisdictions=(J.DE,),
        datasets=(),
        valid_until=NOW - dt.timedelta(days=1),
    )
    decisions = run(
        at_node,
        given=given,
        asked=plan((D.AGE_BAND_5,), jurisdictions=(J.FR,)),
        optout_applied=False,
    )
    assert rules(decisions, J.FR) == {
        RuleId.APPROVAL_SCOPE,
        RuleId.APPROVAL_EXPIRED,
        RuleId.DATASET_NOT_APPROVED,
        RuleId.PURPOSE_PUBLIC_BODY_ONLY,
        RuleId.GRANULARITY,
        RuleId.OPTOUT_NOT_APPLIED,
    }


# -- the same function at the gateway and at a connector ------------------------------------
def test_the_node_has_the_final_veto(shipped: PolicySet, example_node: NodeLayer) -> None:
    federated = FederatedQuery(
        request_id=REQUEST, jurisdictions=[J.FR, J.DE], query=plan((D.AGE_BAND_5,)).query
    )
    at_gateway = decide(
        RESEARCHER,
        approval(),
        QueryPlan.of_federated(federated),
        shipped.policies(federated.jurisdictions),
        now=NOW,
    )
    assert at_gateway.allowed
    request = NodeRequest(
        query_id="q-12345678",
        request_id=REQUEST,
        jurisdiction=J.FR,
        query=federated.query,
        approval=Approval(request_id=REQUEST, purpose="scientific_research", jurisdictions=[J.FR]),
        subject="researcher@test.tessera.eu",
    )
    at_node = decide(
        RESEARCHER,
        approval(),
        QueryPlan.of_node_request(request),
        {J.FR: shipped.effective(J.FR, example_node)},
        now=NOW,
    )
    assert at_node[J.FR].rules == {RuleId.GRANULARITY}


def test_a_pooled_cell_uses_the_strictest_profile(shipped: PolicySet) -> None:
    profile = shipped.strictest([J.DK, J.FR]).disclosure_profile()
    assert (profile.min_count, profile.verified) == (11, True)


# -- the models -----------------------------------------------------------------------------
def test_a_decision_is_allowed_exactly_when_it_has_no_reasons() -> None:
    reason = PolicyReason.of(RuleId.NO_POLICY, J.AT, "no policy")
    with pytest.raises(ValueError, match="exactly when"):
        AccessDecision(jurisdiction=J.AT, allowed=True, reasons=(reason,))
    with pytest.raises(ValueError, match="exactly when"):
        AccessDecision(jurisdiction=J.AT, allowed=False)


def test_a_policy_reason_is_a_reason() -> None:
    reason = PolicyReason.of(RuleId.PURPOSE_PROHIBITED, J.FR, "x" * 600, "EHDS Art. 54(c)")
    assert isinstance(reason, Reason)
    assert len(reason.message) == 256
    assert reason.as_reason() == Reason(
        rule="PURPOSE_PROHIBITED",
        jurisdiction=J.FR,
        message=reason.message,
        article="EHDS Art. 54(c)",
    )
    assert reason.model_dump()["article"] == "EHDS Art. 54(c)"


def test_the_approval_view_reads_todays_approval_claim() -> None:
    claim = Approval(
        request_id=REQUEST, purpose="scientific_research", jurisdictions=[J.FR], datasets=[DATASET]
    )
    view = ApprovalView.from_approval(claim)
    assert (view.request_id, view.jurisdictions, view.datasets) == (
        REQUEST,
        frozenset({J.FR}),
        frozenset({DATASET}),
    )
    assert (view.applicant, view.applicant_kind, view.valid_from, view.valid_until) == (
        None,
        None,
        None,
        None,
    )


class FutureApproval(Approval):
    """`Approval` with the fields this engine asks to be added."""

    applicant: str | None = None
    applicant_kind: str | None = None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None


def test_the_approval_view_reads_the_extended_claim() -> None:
    claim = FutureApproval(
        request_id=REQUEST,
        purpose="public_health",
        jurisdictions=[J.FR],
        applicant="Santé publique France",
        applicant_kind="public_body",
        valid_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        valid_until=dt.datetime(2026, 12, 31),
    )
    view = ApprovalView.from_approval(claim)
    assert view.applicant_kind is ApplicantKind.PUBLIC_BODY
    assert view.applicant == "Santé publique France"
    assert view.valid_until == dt.datetime(2026, 12, 31, tzinfo=dt.UTC)  # naive read as UTC
