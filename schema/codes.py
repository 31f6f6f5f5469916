"""Enumerations shared by the query model, the result model and the GraphQL API."""

from __future__ import annotations

import re
from enum import StrEnum


class Jurisdiction(StrEnum):
    """EU/EEA member states by ISO 3166-1 alpha-2 code (Greece as GR, not EL)."""

    AT = "AT"
    BE = "BE"
    BG = "BG"
    HR = "HR"
    CY = "CY"
    CZ = "CZ"
    DK = "DK"
    EE = "EE"
    FI = "FI"
    FR = "FR"
    DE = "DE"
    GR = "GR"
    HU = "HU"
    IE = "IE"
    IT = "IT"
    LV = "LV"
    LT = "LT"
    LU = "LU"
    MT = "MT"
    NL = "NL"
    PL = "PL"
    PT = "PT"
    RO = "RO"
    SK = "SK"
    SI = "SI"
    ES = "ES"
    SE = "SE"
    IS = "IS"
    LI = "LI"
    NO = "NO"


class Vocabulary(StrEnum):
    """Code systems a query may use; values are OMOP `vocabulary_id`s."""

    ICD10 = "ICD10"
    SNOMED = "SNOMED"
    ATC = "ATC"
    LOINC = "LOINC"
    RXNORM = "RxNorm"


# Shape of a code in each vocabulary. Codes never reach SQL as text (they are bound
# parameters), but rejecting malformed codes early gives the researcher a clear error.
CODE_PATTERNS: dict[Vocabulary, re.Pattern[str]] = {
    Vocabulary.ICD10: re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"),
    Vocabulary.SNOMED: re.compile(r"^[0-9]{6,18}$"),
    Vocabulary.ATC: re.compile(r"^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$"),
    Vocabulary.LOINC: re.compile(r"^[0-9]{1,7}-[0-9]$"),
    Vocabulary.RXNORM: re.compile(r"^[0-9]{1,9}$"),
}


# The OMOP vocabularies a query's vocabulary is looked up in: WHO ICD-10 and the national
# modifications OMOP holds under their own vocabulary_id (France's CIM10, Germany's ICD10GM,
# the US ICD10CM). A code of a national modification shares its WHO parent's stem, so `ICD10
# E11` reaches a German CDM's `ICD10GM E11.90` by prefix.
LOOKUP_VOCABULARIES: dict[Vocabulary, tuple[str, ...]] = {
    Vocabulary.ICD10: ("ICD10", "ICD10CM", "ICD10GM", "CIM10"),
    Vocabulary.SNOMED: ("SNOMED",),
    Vocabulary.ATC: ("ATC",),
    Vocabulary.LOINC: ("LOINC",),
    Vocabulary.RXNORM: ("RxNorm",),
}
# Every vocabulary_id a node may report having found a question's codes in.
KNOWN_VOCABULARY_IDS: frozenset[str] = frozenset(
    v for ids in LOOKUP_VOCABULARIES.values() for v in ids
)
ICD10_STEM = 3


def normalise_code(vocabulary: Vocabulary, code: str) -> str:
    """The code as OMOP spells it: spaces trimmed, letters upper case, and for ICD-10 the dot
    after the three-character category (`e119`, `E11.9` and ` e11.9 ` are all `E11.9`).
    Anything that stays malformed is left for `CODE_PATTERNS` to reject."""
    code = code.strip().upper()
    if vocabulary is Vocabulary.ICD10:
        bare = code.replace(".", "")
        code = bare if len(bare) <= ICD10_STEM else f"{bare[:ICD10_STEM]}.{bare[ICD10_STEM:]}"
    return code


class Sex(StrEnum):
    FEMALE = "FEMALE"
    MALE = "MALE"


class Dimension(StrEnum):
    """Breakdown dimensions: the published allow-list. Nothing else can be grouped by. What
    each one is (its keys, its cells, its order) is its entry in `schema.dimensions`."""

    JURISDICTION = "JURISDICTION"
    SEX = "SEX"
    AGE_BAND_5 = "AGE_BAND_5"
    AGE_BAND_10 = "AGE_BAND_10"
    AGE_BAND_20 = "AGE_BAND_20"
    CALENDAR_YEAR = "CALENDAR_YEAR"
    VALUE_BIN = "VALUE_BIN"
    FOLLOW_UP = "FOLLOW_UP"


class AgeAt(StrEnum):
    """The date a person's age is taken at (age criteria and age bands alike), in whole years:
    the year of that date minus the year of birth (OMOP often holds the year of birth only).
    REFERENCE_DATE: the question's reference date, the same date for everyone. INDEX_EVENT:
    each person's index date with an explicit index (`schema.query.IndexEvent`), else their
    index event, their first event matching the criteria's first top-level condition (else
    drug, else measurement) within its window, exclusions aside; the default for questions
    that have one, so that historic data fall into the age bands they were in at the time."""

    REFERENCE_DATE = "REFERENCE_DATE"
    INDEX_EVENT = "INDEX_EVENT"


class EventDomain(StrEnum):
    """Where an event of an index or a relative criterion is recorded (OMOP tables):
    CONDITION `condition_occurrence`, DRUG `drug_exposure`, MEASUREMENT `measurement`, VISIT
    `visit_occurrence` (the visit itself, by its type), DEATH `death` (the date of death)."""

    CONDITION = "CONDITION"
    DRUG = "DRUG"
    MEASUREMENT = "MEASUREMENT"
    VISIT = "VISIT"
    DEATH = "DEATH"


class VisitType(StrEnum):
    """The kind of visit an event belongs to (by its `visit_occurrence_id`), as the OMOP
    standard visit concepts say: INPATIENT an admission (9201), EMERGENCY an emergency room
    visit (9203), OUTPATIENT an outpatient visit (9202), INPATIENT_OR_EMERGENCY either; an
    emergency room visit followed by an admission (262) is both an INPATIENT and an EMERGENCY
    visit."""

    INPATIENT = "INPATIENT"
    EMERGENCY = "EMERGENCY"
    OUTPATIENT = "OUTPATIENT"
    INPATIENT_OR_EMERGENCY = "INPATIENT_OR_EMERGENCY"


class Occurrence(StrEnum):
    """Which qualifying events of an index are candidates. FIRST: each person's earliest
    qualifying event only. ALL: every one; a person counts if any candidate satisfies the
    criteria, and is dated by the earliest that does."""

    FIRST = "FIRST"
    ALL = "ALL"


class MeasureKind(StrEnum):
    """What is computed per cell: distinct persons, and the sufficient statistics of the
    question's numeric variable (`schema.variables`), each person's value clipped to public
    bounds and counted in whole units of the variable's resolution, centred on the bounds'
    midpoint: how many persons have a value (`VALUE_N`), the sum of their values
    (`VALUE_SUM`) and of their squares (`VALUE_SUM_SQUARES`); and an incidence rate's
    numerator and denominator over the question's follow-up (`schema.query.Outcome`): the
    persons whose first outcome falls in it (`OUTCOME_EVENTS`) and the days at risk
    (`PERSON_DAYS`, each person's clipped to the window's length)."""

    PERSON_COUNT = "PERSON_COUNT"
    VALUE_N = "VALUE_N"
    VALUE_SUM = "VALUE_SUM"
    VALUE_SUM_SQUARES = "VALUE_SUM_SQUARES"
    OUTCOME_EVENTS = "OUTCOME_EVENTS"
    PERSON_DAYS = "PERSON_DAYS"


class ValueStatus(StrEnum):
    """How a released number relates to the truth. `LOW` and `SUPPRESSED` carry no value: LOW
    says the noisy count fell below the jurisdiction's minimum (zeros included, so it tells
    nobody whether anyone is there); SUPPRESSED says a rule withheld it for a reason that
    does not depend on the count (its reasons say which)."""

    EXACT = "EXACT"
    ROUNDED = "ROUNDED"
    PERTURBED = "PERTURBED"
    LOW = "LOW"
    SUPPRESSED = "SUPPRESSED"


WITHHELD: frozenset[ValueStatus] = frozenset({ValueStatus.LOW, ValueStatus.SUPPRESSED})


class NoiseLevel(StrEnum):
    """How much noise a question asks for. COARSE doubles the standard deviation and costs a
    quarter of the privacy budget: for exploring before asking precisely."""

    STANDARD = "STANDARD"
    COARSE = "COARSE"


class NodeStatus(StrEnum):
    """What happened at one node for one query."""

    OK = "OK"
    DENIED = "DENIED"
    TIMEOUT = "TIMEOUT"
    UNAVAILABLE = "UNAVAILABLE"
    ERROR = "ERROR"
    REJECTED = "REJECTED"
    # The question names a code the node's vocabulary does not hold: a fact about the
    # vocabulary (public), not about persons. A code it holds that nobody has is a count.
    UNKNOWN_CODE = "UNKNOWN_CODE"
