"""The policy layers as written in the policy files: an EU baseline, one layer per
jurisdiction, and an optional node layer kept by a hub next to its connector.

Every layer has the same rule sections (`Rules`); a layer states only the rules it has
something to say about, and composition (policies.compose) takes the strictest value of every
rule across layers, so a layer can tighten but never loosen. The baseline must state every rule
that always needs a value, which is what makes the composed policy complete.

Every rule value is `Sourced`: the number (or setting) together with where it comes from and
whether the health data access body has confirmed it. Files are validated strictly: unknown
keys, strings where numbers belong and out-of-range values are errors.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Generic, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from policies.profiles import MAX_RHO
from policies.purposes import Purpose
from schema.codes import Dimension, Jurisdiction

T = TypeVar("T")


class PolicyModel(BaseModel):
    # Sources quote rules and can be long; everything else is short by construction.
    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=2048)


def _number(value: object) -> object:
    # Lax float parsing would accept "85" or true; in a policy file those are mistakes.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


Number = Annotated[float, BeforeValidator(_number)]
NonEmptyText = Annotated[str, Field(min_length=1)]
HttpsUrl = Annotated[str, Field(pattern=r"^https://[^\s]+$", max_length=512)]
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


class Sourced(PolicyModel, Generic[T]):
    """A rule value with its provenance. `verified` is true only once the jurisdiction's
    health data access body has confirmed the value; an unverified value must be confirmed
    before production use."""

    value: T
    source: NonEmptyText
    verified: StrictBool = False

    def __repr_name__(self) -> str:
        # Not the parametrised class name, which spells out every constraint of T.
        return "Sourced"


MinCount = Annotated[StrictInt, Field(ge=1, le=1000)]
RoundingBase = Annotated[StrictInt, Field(ge=1, le=1000)]
Percent = Annotated[Number, Field(gt=0, le=100)]
AgeBandWidth = Annotated[StrictInt, Field(ge=1, le=130)]
MaxCells = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
PerPeriod = Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class Dominance(PolicyModel):
    """The (n, k) dominance rule for magnitudes: a cell is sensitive when its `n` largest
    contributors account for more than `k` percent of its total."""

    n: Annotated[StrictInt, Field(ge=1, le=10)]
    k: Percent


class Noise(PolicyModel):
    """Discrete Gaussian noise on every released count: its standard deviation. A question
    may ask for coarse noise, twice this (policies.profiles.COARSE_FACTOR)."""

    sigma: Annotated[Number, Field(ge=0.5, le=1000)]


BudgetRho = Annotated[Number, Field(gt=0, le=MAX_RHO)]


class Budget(PolicyModel):
    """Each person's privacy budget (zCDP rho) per applicant researcher and per applicant
    organisation: a person counted in answers worth more drops out of that applicant's
    counts. At most 0.5, the spend at which any count stays uncertain by a person."""

    applicant: BudgetRho
    organisation: BudgetRho


MinPoolNodes = Annotated[StrictInt, Field(ge=2, le=32)]


class SecurePooling(PolicyModel):
    """Whether this jurisdiction's nodes take part in secure pooling across borders (their
    counts, withheld ones included, enter a pooled count only as masked noise shares), and
    the fewest nodes a pooled round must have for them to take part. A jurisdiction that
    does not want its withheld cells in any pooled count states `enabled = false`: taking
    part cannot depend on the data, so it then contributes nothing to secure pooling."""

    enabled: StrictBool
    min_nodes: MinPoolNodes


class DisclosureRules(PolicyModel):
    min_count: Sourced[MinCount] | None = None
    rounding_base: Sourced[RoundingBase] | None = None
    noise: Sourced[Noise] | None = None
    budget: Sourced[Budget] | None = None
    secure_pooling: Sourced[SecurePooling] | None = None
    dominance: Sourced[Dominance] | None = None
    p_percent: Sourced[Percent] | None = None


class DimensionRules(PolicyModel):
    """Which dimensions a table may use: those `allowed` less those `not_allowed`. The baseline
    lists the published ones in `allowed`; a jurisdiction or node refuses one by naming it in
    `not_allowed`, so a layer states only what differs from the baseline."""

    allowed: Sourced[frozenset[Dimension]] | None = None
    not_allowed: Sourced[frozenset[Dimension]] | None = None
    min_age_band_width: Sourced[AgeBandWidth] | None = None
    # Upper bound on the cells of one table (see policies.domain.table_cells).
    max_cells: Sourced[MaxCells] | None = None


class PurposeRules(PolicyModel):
    allowed: Sourced[frozenset[Purpose]] | None = None
    public_body_only: Sourced[frozenset[Purpose]] | None = None


class OptOutRules(PolicyModel):
    required: Sourced[StrictBool] | None = None
    # How people opt out and how the hub applies it: a description for people, not a rule.
    mechanism: NonEmptyText | None = None


class RateLimits(PolicyModel):
    per_researcher_per_minute: Sourced[PerPeriod] | None = None
    per_approval_per_day: Sourced[PerPeriod] | None = None


class ApprovalRules(PolicyModel):
    revoked: Sourced[frozenset[RequestId]] | None = None


class Rules(PolicyModel):
    """The rule sections every layer shares. An absent rule says nothing (it does not loosen
    anything); composition fills it from the other layers."""

    disclosure: DisclosureRules = DisclosureRules()
    dimensions: DimensionRules = DimensionRules()
    purposes: PurposeRules = PurposeRules()
    optout: OptOutRules = OptOutRules()
    rate_limits: RateLimits = RateLimits()
    approvals: ApprovalRules = ApprovalRules()

    def rule(self, path: RulePath) -> Sourced[Any] | None:
        section, name = path
        value: Sourced[Any] | None = getattr(getattr(self, section), name)
        return value

    def rules(self) -> dict[RulePath, Sourced[Any]]:
        """The rules this layer states, by path."""
        return {path: rule for path in RULE_PATHS if (rule := self.rule(path)) is not None}

    def missing(self, paths: tuple[RulePath, ...]) -> list[RulePath]:
        return [path for path in paths if self.rule(path) is None]


RulePath = tuple[str, str]

# Every sourced rule, in the order files and reports present them.
RULE_PATHS: Final[tuple[RulePath, ...]] = (
    ("disclosure", "min_count"),
    ("disclosure", "rounding_base"),
    ("disclosure", "noise"),
    ("disclosure", "budget"),
    ("disclosure", "secure_pooling"),
    ("disclosure", "dominance"),
    ("disclosure", "p_percent"),
    ("dimensions", "allowed"),
    ("dimensions", "not_allowed"),
    ("dimensions", "min_age_band_width"),
    ("dimensions", "max_cells"),
    ("purposes", "allowed"),
    ("purposes", "public_body_only"),
    ("optout", "required"),
    ("rate_limits", "per_researcher_per_minute"),
    ("rate_limits", "per_approval_per_day"),
    ("approvals", "revoked"),
)

# Rules that may be absent from every layer: an absent one is simply not applied (no secure
# pooling, no magnitude rule, no dimension refused beyond the allow-list). All others must be
# stated by the baseline, so that every composed policy has a value for them.
OPTIONAL_RULES: Final[frozenset[RulePath]] = frozenset(
    {
        ("disclosure", "secure_pooling"),
        ("disclosure", "dominance"),
        ("disclosure", "p_percent"),
        ("dimensions", "not_allowed"),
    }
)
REQUIRED_RULES: Final[tuple[RulePath, ...]] = tuple(
    path for path in RULE_PATHS if path not in OPTIONAL_RULES
)


def dotted(path: RulePath) -> str:
    return ".".join(path)


class Hdab(PolicyModel):
    """The jurisdiction's health data access body (EHDS Art. 55)."""

    name: NonEmptyText
    url: HttpsUrl | None = None
    source: NonEmptyText
    verified: StrictBool = False


# Asymmetric algorithms only: a symmetric secret shared with a gateway would let the gateway
# mint approvals itself. "none" is never acceptable.
Algorithm = Literal["EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256"]


class Issuer(PolicyModel):
    """A token issuer whose approvals this jurisdiction accepts."""

    iss: HttpsUrl
    # Where its public keys are: a JWKS URL, or a JWKS file relative to the policy file.
    # Neither: the deployment supplies the keys (e.g. the gateway's federation file).
    jwks_url: HttpsUrl | None = None
    jwks_file: NonEmptyText | None = None
    algorithms: Annotated[tuple[Algorithm, ...], Field(min_length=1)]


class BaselineLayer(Rules):
    """The EU baseline (EHDS): applies to every jurisdiction and states every required rule."""

    name: NonEmptyText

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if missing := self.missing(REQUIRED_RULES):
            raise ValueError(
                "the baseline must state every required rule; missing: "
                + ", ".join(dotted(path) for path in missing)
            )
        return self


class JurisdictionLayer(Rules):
    """One jurisdiction's national rules: who its HDAB is, which issuers it trusts, and the
    rules it adds to the baseline."""

    name: NonEmptyText
    jurisdiction: Jurisdiction
    hdab: Hdab
    issuers: tuple[Issuer, ...] = ()

    @model_validator(mode="after")
    def _states_its_threshold(self) -> Self:
        # The minimum count is the national rule every hub is asked about first; a
        # jurisdiction file that does not state it is incomplete.
        if missing := self.missing((("disclosure", "min_count"),)):
            raise ValueError(
                "a jurisdiction must state " + ", ".join(dotted(path) for path in missing)
            )
        return self


class LayerNode(PolicyModel):
    """Which node a node layer is for (its `[node]` table)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    jurisdiction: Jurisdiction
    # The datasets this node answers from; the researcher's permit must name one of them.
    # None named: the node serves one dataset named after its node id (see the connector).
    datasets: frozenset[Annotated[str, Field(min_length=1, max_length=128)]] = frozenset()


class NodeLayer(Rules):
    """A hub's own layer, kept next to its connector: the node has the final veto."""

    name: NonEmptyText
    node: LayerNode


Layer = BaselineLayer | JurisdictionLayer | NodeLayer
