"""The small OMOP vocabulary the synthetic databases ship with.

Concept ids below `LOCAL_ID_BASE` are the real OMOP (Athena) ids of those concepts; every
other concept has an invented id of at least `LOCAL_ID_BASE`, the range OMOP reserves for
site-local concepts, so no invented id can collide with a real one. Check invented ones
against Athena before relying on them outside synthetic data. Concept codes are the real codes
of each vocabulary (SNOMED CT, WHO ICD-10, ATC, RxNorm, LOINC, UCUM) even where the id is
invented, because queries name concepts by `(vocabulary_id, concept_code)`.

As in a real OMOP vocabulary, `concept_ancestor` holds standard and classification concepts
only (each its own ancestor at level 0); ICD-10 source concepts are not in it, so a query on
an ICD-10 category reaches its dotted children by code prefix.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

LOCAL_ID_BASE: Final = 2_000_000_000


@dataclass(frozen=True, slots=True)
class Concept:
    concept_id: int
    name: str
    domain: str
    vocabulary: str
    concept_class: str
    standard: str | None  # 'S' standard, 'C' classification, None for source concepts
    code: str


def _snomed(concept_id: int, code: str, name: str) -> Concept:
    return Concept(concept_id, name, "Condition", "SNOMED", "Disorder", "S", code)


def _icd10(
    concept_id: int, code: str, name: str, has_children: bool, vocabulary: str = "ICD10"
) -> Concept:
    # OMOP files ICD-10 categories that have children as 'ICD10 Hierarchy'; the rest are codes.
    klass = "ICD10 Hierarchy" if has_children else "ICD10 code"
    return Concept(concept_id, name, "Condition", vocabulary, klass, None, code)


def _atc(concept_id: int, code: str, name: str) -> Concept:
    level = {1: "1st", 3: "2nd", 4: "3rd", 5: "4th", 7: "5th"}[len(code)]
    return Concept(concept_id, name, "Drug", "ATC", f"ATC {level}", "C", code)


def _rxnorm(concept_id: int, code: str, name: str) -> Concept:
    return Concept(concept_id, name, "Drug", "RxNorm", "Ingredient", "S", code)


def _loinc(concept_id: int, code: str, name: str, klass: str) -> Concept:
    return Concept(concept_id, name, "Measurement", "LOINC", klass, "S", code)


def _unit(concept_id: int, code: str, name: str) -> Concept:
    return Concept(concept_id, name, "Unit", "UCUM", "Unit", "S", code)


def _type(concept_id: int, name: str) -> Concept:
    return Concept(concept_id, name, "Type Concept", "Type Concept", "Type Concept", "S", name)


# --- Standard condition concepts (SNOMED) -----------------------------------------------------
DIABETES: Final = 201820
T2D: Final = 201826
T1D: Final = 201254
T2D_COMPLICATION: Final = 443732
T2D_NEURO: Final = 376065
T2D_RENAL: Final = 2_000_100_001
HYPERTENSIVE_DISORDER: Final = 316866
HYPERTENSION: Final = 320128
HEART_FAILURE: Final = 316139
CONGESTIVE_HF: Final = 319835
LV_FAILURE: Final = 2_000_100_002
MI: Final = 4329847
ACUTE_MI: Final = 312327
CORONAVIRUS_INFECTION: Final = 439676
COVID: Final = 37311061
OBESITY: Final = 433736
PNEUMONIA: Final = 255848
MYOCARDITIS: Final = 2_000_100_003
PERICARDITIS: Final = 2_000_100_004
SARCOMA: Final = 2_000_100_005
AUTISM_SPECTRUM: Final = 2_000_100_006
AUTISTIC_DISORDER: Final = 2_000_100_007
ASPERGER: Final = 2_000_100_008
EPILEPSY: Final = 380378
INTELLECTUAL_DISABILITY: Final = 40277917
ID_MILD: Final = 2_000_100_009
ID_MODERATE: Final = 2_000_100_010
ID_SEVERE: Final = 2_000_100_011
ID_PROFOUND: Final = 438733

_SNOMED: Final = (
    _snomed(DIABETES, "73211009", "Diabetes mellitus"),
    _snomed(T2D, "44054006", "Type 2 diabetes mellitus"),
    _snomed(T1D, "46635009", "Type 1 diabetes mellitus"),
    _snomed(T2D_COMPLICATION, "422014003", "Disorder due to type 2 diabetes mellitus"),
    _snomed(T2D_NEURO, "421326000", "Disorder of nervous system due to type 2 diabetes mellitus"),
    _snomed(T2D_RENAL, "420279001", "Renal disorder due to type 2 diabetes mellitus"),
    _snomed(HYPERTENSIVE_DISORDER, "38341003", "Hypertensive disorder, systemic arterial"),
    _snomed(HYPERTENSION, "59621000", "Essential hypertension"),
    _snomed(HEART_FAILURE, "84114007", "Heart failure"),
    _snomed(CONGESTIVE_HF, "42343007", "Congestive heart failure"),
    _snomed(LV_FAILURE, "85232009", "Left heart failure"),
    _snomed(MI, "22298006", "Myocardial infarction"),
    _snomed(ACUTE_MI, "57054005", "Acute myocardial infarction"),
    _snomed(CORONAVIRUS_INFECTION, "186747009", "Coronavirus infection"),
    _snomed(COVID, "840539006", "COVID-19"),
    _snomed(OBESITY, "414916001", "Obesity"),
    _snomed(PNEUMONIA, "233604007", "Pneumonia"),
    _snomed(MYOCARDITIS, "50920009", "Myocarditis"),
    _snomed(PERICARDITIS, "3238004", "Pericarditis"),
    _snomed(SARCOMA, "424413001", "Sarcoma"),
    _snomed(AUTISM_SPECTRUM, "35919005", "Autism spectrum disorder"),
    _snomed(AUTISTIC_DISORDER, "408856003", "Autistic disorder"),
    _snomed(ASPERGER, "23560001", "Asperger's disorder"),
    _snomed(EPILEPSY, "84757009", "Epilepsy"),
    _snomed(INTELLECTUAL_DISABILITY, "110359009", "Intellectual disability"),
    _snomed(ID_MILD, "86765009", "Mild intellectual disability"),
    _snomed(ID_MODERATE, "61152003", "Moderate intellectual disability"),
    _snomed(ID_SEVERE, "40700009", "Severe intellectual disability"),
    _snomed(ID_PROFOUND, "31216003", "Profound intellectual disability"),
)

_SNOMED_EDGES: Final = (
    (DIABETES, T2D),
    (DIABETES, T1D),
    (T2D, T2D_COMPLICATION),
    (T2D_COMPLICATION, T2D_NEURO),
    (T2D_COMPLICATION, T2D_RENAL),
    (HYPERTENSIVE_DISORDER, HYPERTENSION),
    (HEART_FAILURE, CONGESTIVE_HF),
    (HEART_FAILURE, LV_FAILURE),
    (MI, ACUTE_MI),
    (CORONAVIRUS_INFECTION, COVID),
    (AUTISM_SPECTRUM, AUTISTIC_DISORDER),
    (AUTISM_SPECTRUM, ASPERGER),
    (INTELLECTUAL_DISABILITY, ID_MILD),
    (INTELLECTUAL_DISABILITY, ID_MODERATE),
    (INTELLECTUAL_DISABILITY, ID_SEVERE),
    (INTELLECTUAL_DISABILITY, ID_PROFOUND),
)

# --- ICD-10 source concepts, each with the standard concept it maps to -----------------------
# (concept_id, code, name, standard concept_id it "Maps to")
_ICD10_ROWS: Final[tuple[tuple[int, str, str, int], ...]] = (
    (2_000_200_001, "E10", "Type 1 diabetes mellitus", T1D),
    (2_000_200_002, "E10.9", "Type 1 diabetes mellitus without complications", T1D),
    (2_000_200_003, "E11", "Type 2 diabetes mellitus", T2D),
    (2_000_200_004, "E11.2", "Type 2 diabetes mellitus with renal complications", T2D_RENAL),
    (2_000_200_005, "E11.4", "Type 2 diabetes mellitus with neurological complications", T2D_NEURO),
    (
        2_000_200_006,
        "E11.6",
        "Type 2 diabetes mellitus with other specified complications",
        T2D_COMPLICATION,
    ),
    (2_000_200_007, "E11.9", "Type 2 diabetes mellitus without complications", T2D),
    (2_000_200_008, "E66", "Obesity", OBESITY),
    (2_000_200_009, "E66.0", "Obesity due to excess calories", OBESITY),
    (2_000_200_010, "E66.9", "Obesity, unspecified", OBESITY),
    (45591453, "I10", "Essential (primary) hypertension", HYPERTENSION),
    (2_000_200_011, "I21", "Acute myocardial infarction", ACUTE_MI),
    (
        2_000_200_012,
        "I21.0",
        "Acute transmural myocardial infarction of anterior wall",
        ACUTE_MI,
    ),
    (2_000_200_013, "I21.4", "Acute subendocardial myocardial infarction", ACUTE_MI),
    (2_000_200_014, "I21.9", "Acute myocardial infarction, unspecified", ACUTE_MI),
    (2_000_200_015, "I30", "Acute pericarditis", PERICARDITIS),
    (2_000_200_016, "I30.0", "Acute nonspecific idiopathic pericarditis", PERICARDITIS),
    (2_000_200_017, "I30.1", "Infective pericarditis", PERICARDITIS),
    (2_000_200_018, "I30.8", "Other forms of acute pericarditis", PERICARDITIS),
    (2_000_200_019, "I30.9", "Acute pericarditis, unspecified", PERICARDITIS),
    (45601033, "I40", "Acute myocarditis", MYOCARDITIS),
    (45562348, "I40.0", "Infective myocarditis", MYOCARDITIS),
    (45538380, "I40.1", "Isolated myocarditis", MYOCARDITIS),
    (45533449, "I40.8", "Other acute myocarditis", MYOCARDITIS),
    (45596203, "I40.9", "Acute myocarditis, unspecified", MYOCARDITIS),
    (2_000_200_020, "I50", "Heart failure", HEART_FAILURE),
    (2_000_200_021, "I50.0", "Congestive heart failure", CONGESTIVE_HF),
    (2_000_200_022, "I50.1", "Left ventricular failure", LV_FAILURE),
    (2_000_200_023, "I50.9", "Heart failure, unspecified", HEART_FAILURE),
    (2_000_200_024, "U07", "Emergency use of U07", COVID),
    (2_000_200_025, "U07.1", "COVID-19, virus identified", COVID),
    (2_000_200_026, "U07.2", "COVID-19, virus not identified", COVID),
    (
        2_000_200_027,
        "C49",
        "Malignant neoplasm of other connective and soft tissue",
        SARCOMA,
    ),
    (2_000_200_028, "C49.0", "Connective and soft tissue of head, face and neck", SARCOMA),
    (2_000_200_029, "C49.1", "Connective and soft tissue of upper limb", SARCOMA),
    (2_000_200_030, "C49.2", "Connective and soft tissue of lower limb", SARCOMA),
    (2_000_200_031, "C49.3", "Connective and soft tissue of thorax", SARCOMA),
    (2_000_200_032, "C49.4", "Connective and soft tissue of abdomen", SARCOMA),
    (2_000_200_033, "C49.9", "Connective and soft tissue, unspecified", SARCOMA),
    (2_000_200_034, "F84", "Pervasive developmental disorders", AUTISM_SPECTRUM),
    (2_000_200_035, "F84.0", "Childhood autism", AUTISTIC_DISORDER),
    (2_000_200_036, "F84.1", "Atypical autism", AUTISM_SPECTRUM),
    (2_000_200_037, "F84.5", "Asperger syndrome", ASPERGER),
    (2_000_200_038, "F84.8", "Other pervasive developmental disorders", AUTISM_SPECTRUM),
    (2_000_200_039, "F84.9", "Pervasive developmental disorder, unspecified", AUTISM_SPECTRUM),
    (2_000_200_040, "G40", "Epilepsy", EPILEPSY),
    (
        2_000_200_041,
        "G40.3",
        "Generalized idiopathic epilepsy and epileptic syndromes",
        EPILEPSY,
    ),
    (2_000_200_042, "G40.9", "Epilepsy, unspecified", EPILEPSY),
    (2_000_200_043, "F70", "Mild mental retardation", ID_MILD),
    (2_000_200_044, "F71", "Moderate mental retardation", ID_MODERATE),
    (2_000_200_045, "F72", "Severe mental retardation", ID_SEVERE),
    (2_000_200_046, "F73", "Profound mental retardation", ID_PROFOUND),
    (2_000_200_047, "F79", "Unspecified mental retardation", INTELLECTUAL_DISABILITY),
    (2_000_200_048, "J18", "Pneumonia, organism unspecified", PNEUMONIA),
    (2_000_200_049, "J18.0", "Bronchopneumonia, unspecified", PNEUMONIA),
    (2_000_200_050, "J18.1", "Lobar pneumonia, unspecified", PNEUMONIA),
    (2_000_200_051, "J18.9", "Pneumonia, unspecified", PNEUMONIA),
)

ICD10_ID: Final[dict[str, int]] = {code: cid for cid, code, _, _ in _ICD10_ROWS}

# Where a CDM's ICD-10 source concepts may live: WHO ICD-10, or a national modification with
# an OMOP vocabulary of its own (Germany's ICD10GM, France's CIM10). A national one gets ids of
# its own (invented, from the base below), as it has in a real vocabulary; its codes here are
# the WHO codes, which both modifications extend.
ICD10_VOCABULARIES: Final = ("ICD10", "ICD10GM", "CIM10")
_NATIONAL_ID_BASE: Final = {"ICD10GM": 2_000_600_000, "CIM10": 2_000_700_000}


def icd10_ids(vocabulary: str) -> dict[int, int]:
    """Each WHO ICD-10 concept id of this vocabulary -> the id of its code in `vocabulary`."""
    if vocabulary not in ICD10_VOCABULARIES:
        raise ValueError(f"ICD-10 vocabulary must be one of {', '.join(ICD10_VOCABULARIES)}")
    if vocabulary == "ICD10":
        return {cid: cid for cid, *_ in _ICD10_ROWS}
    base = _NATIONAL_ID_BASE[vocabulary]
    return {cid: base + k for k, (cid, *_) in enumerate(_ICD10_ROWS, start=1)}


# The standard concept each ICD-10 source concept maps to, as an ETL's 'Maps to' would give.
MAPS_TO: Final[dict[int, int]] = {cid: target for cid, _, _, target in _ICD10_ROWS}

# --- Drugs: ATC classes above RxNorm ingredients ----------------------------------------------
METFORMIN: Final = 1503297
INSULIN_GLARGINE: Final = 1502905
INSULIN_ASPART: Final = 2_000_400_001
LIRAGLUTIDE: Final = 40170911
SEMAGLUTIDE: Final = 793143
DAPAGLIFLOZIN: Final = 44785829
EMPAGLIFLOZIN: Final = 45774751
RAMIPRIL: Final = 1334456
BISOPROLOL: Final = 1338005
COVID_MRNA_VACCINE: Final = 2_000_400_002

_RXNORM: Final = (
    _rxnorm(METFORMIN, "6809", "metformin"),
    _rxnorm(INSULIN_GLARGINE, "274783", "insulin glargine"),
    _rxnorm(INSULIN_ASPART, "51428", "insulin aspart"),
    _rxnorm(LIRAGLUTIDE, "475968", "liraglutide"),
    _rxnorm(SEMAGLUTIDE, "1991302", "semaglutide"),
    _rxnorm(DAPAGLIFLOZIN, "1488564", "dapagliflozin"),
    _rxnorm(EMPAGLIFLOZIN, "1545653", "empagliflozin"),
    _rxnorm(RAMIPRIL, "35296", "ramipril"),
    _rxnorm(BISOPROLOL, "19484", "bisoprolol"),
    _rxnorm(COVID_MRNA_VACCINE, "2468235", "SARS-CoV-2 (COVID-19) vaccine, mRNA-BNT162b2"),
)

# (concept_id, ATC code, name); parents follow from the code (A10BA02 -> A10BA -> A10B ...).
_ATC_ROWS: Final[tuple[tuple[int, str, str], ...]] = (
    (2_000_300_001, "A", "ALIMENTARY TRACT AND METABOLISM"),
    (2_000_300_002, "A10", "DRUGS USED IN DIABETES"),
    (2_000_300_003, "A10A", "INSULINS AND ANALOGUES"),
    (2_000_300_004, "A10AB", "Insulins and analogues for injection, fast-acting"),
    (2_000_300_005, "A10AB05", "insulin aspart"),
    (2_000_300_006, "A10AE", "Insulins and analogues for injection, long-acting"),
    (2_000_300_007, "A10AE04", "insulin glargine"),
    (2_000_300_008, "A10B", "BLOOD GLUCOSE LOWERING DRUGS, EXCL. INSULINS"),
    (2_000_300_009, "A10BA", "Biguanides"),
    (2_000_300_010, "A10BA02", "metformin"),
    (2_000_300_011, "A10BJ", "Glucagon-like peptide-1 (GLP-1) analogues"),
    (2_000_300_012, "A10BJ02", "liraglutide"),
    (2_000_300_013, "A10BJ06", "semaglutide"),
    (2_000_300_014, "A10BK", "Sodium-glucose co-transporter 2 (SGLT2) inhibitors"),
    (2_000_300_015, "A10BK01", "dapagliflozin"),
    (2_000_300_016, "A10BK03", "empagliflozin"),
    (2_000_300_017, "C", "CARDIOVASCULAR SYSTEM"),
    (2_000_300_018, "C07", "BETA BLOCKING AGENTS"),
    (2_000_300_019, "C07A", "BETA BLOCKING AGENTS"),
    (2_000_300_020, "C07AB", "Beta blocking agents, selective"),
    (2_000_300_021, "C07AB07", "bisoprolol"),
    (2_000_300_022, "C09", "AGENTS ACTING ON THE RENIN-ANGIOTENSIN SYSTEM"),
    (2_000_300_023, "C09A", "ACE INHIBITORS, PLAIN"),
    (2_000_300_024, "C09AA", "ACE inhibitors, plain"),
    (2_000_300_025, "C09AA05", "ramipril"),
    (2_000_300_026, "J", "ANTIINFECTIVES FOR SYSTEMIC USE"),
    (2_000_300_027, "J07", "VACCINES"),
    (2_000_300_028, "J07B", "VIRAL VACCINES"),
    (2_000_300_029, "J07BN", "Covid-19 vaccines"),
    (2_000_300_030, "J07BN01", "covid-19, RNA-based vaccine"),
)
ATC_ID: Final[dict[str, int]] = {code: cid for cid, code, _ in _ATC_ROWS}

# The ATC 5th-level class of each ingredient: the drug's source code in European data.
INGREDIENT_ATC: Final[dict[int, str]] = {
    METFORMIN: "A10BA02",
    INSULIN_GLARGINE: "A10AE04",
    INSULIN_ASPART: "A10AB05",
    LIRAGLUTIDE: "A10BJ02",
    SEMAGLUTIDE: "A10BJ06",
    DAPAGLIFLOZIN: "A10BK01",
    EMPAGLIFLOZIN: "A10BK03",
    RAMIPRIL: "C09AA05",
    BISOPROLOL: "C07AB07",
    COVID_MRNA_VACCINE: "J07BN01",
}

# --- Measurements and units -------------------------------------------------------------------
HBA1C: Final = 3004410
BMI: Final = 3038553
CHOLESTEROL: Final = 3027114
SYSTOLIC_BP: Final = 3004249
PERCENT: Final = 8554
KG_PER_M2: Final = 9531
MM_HG: Final = 8876
MG_PER_DL: Final = 8840

_MEASUREMENTS: Final = (
    _loinc(HBA1C, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "Lab Test"),
    _loinc(BMI, "39156-5", "Body mass index (BMI) [Ratio]", "Clinical Observation"),
    _loinc(CHOLESTEROL, "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "Lab Test"),
    _loinc(SYSTOLIC_BP, "8480-6", "Systolic blood pressure", "Clinical Observation"),
    _unit(PERCENT, "%", "percent"),
    _unit(KG_PER_M2, "kg/m2", "kilogram per square meter"),
    _unit(MM_HG, "mm[Hg]", "millimeter mercury column"),
    _unit(MG_PER_DL, "mg/dL", "milligram per deciliter"),
)

# --- Demographics, visits, provenance ---------------------------------------------------------
MALE: Final = 8507
FEMALE: Final = 8532
INPATIENT: Final = 9201
OUTPATIENT: Final = 9202
EMERGENCY: Final = 9203
EMERGENCY_INPATIENT: Final = 262
NO_MATCHING_CONCEPT: Final = 0
CDM_V54: Final = 756265
EHR: Final = 32817
EHR_ADMINISTRATION: Final = 32818
EHR_PRESCRIPTION: Final = 32838
LAB: Final = 32856
REGISTRY: Final = 32879

_OTHER: Final = (
    Concept(NO_MATCHING_CONCEPT, "No matching concept", "Metadata", "None", "Undefined", None,
            "No matching concept"),
    Concept(MALE, "MALE", "Gender", "Gender", "Gender", "S", "M"),
    Concept(FEMALE, "FEMALE", "Gender", "Gender", "Gender", "S", "F"),
    Concept(INPATIENT, "Inpatient Visit", "Visit", "Visit", "Visit", "S", "IP"),
    Concept(OUTPATIENT, "Outpatient Visit", "Visit", "Visit", "Visit", "S", "OP"),
    Concept(EMERGENCY, "Emergency Room Visit", "Visit", "Visit", "Visit", "S", "ER"),
    Concept(EMERGENCY_INPATIENT, "Emergency Room and Inpatient Visit", "Visit", "Visit", "Visit",
            "S", "ERIP"),
    Concept(CDM_V54, "OMOP CDM Version 5.4.0", "Metadata", "CDM", "CDM", "S", "CDM v5.4.0"),
    _type(EHR, "EHR"),
    _type(EHR_ADMINISTRATION, "EHR administration record"),
    _type(EHR_PRESCRIPTION, "EHR prescription"),
    _type(LAB, "Lab"),
    _type(REGISTRY, "Registry"),
)  # fmt: skip

VOCABULARY_VERSION: Final = "Tessera synthetic vocabulary 2025-1"


def concepts(icd10_vocabulary: str = "ICD10") -> tuple[Concept, ...]:
    """Every concept, the ICD-10 source concepts under `icd10_vocabulary`."""
    categories = {code.split(".")[0] for code in ICD10_ID if "." in code}
    ids = icd10_ids(icd10_vocabulary)
    icd10 = tuple(
        _icd10(ids[cid], code, name, code in categories, icd10_vocabulary)
        for cid, code, name, _ in _ICD10_ROWS
    )
    atc = tuple(_atc(cid, code, name) for cid, code, name in _ATC_ROWS)
    return _SNOMED + icd10 + atc + _RXNORM + _MEASUREMENTS + _OTHER


def _atc_edges() -> Iterator[tuple[int, int]]:
    for cid, code, _ in _ATC_ROWS:
        shorter = [code[:n] for n in (5, 4, 3, 1) if n < len(code)]
        parent = next((p for p in shorter if p in ATC_ID), None)
        if parent is not None:
            yield ATC_ID[parent], cid
    for ingredient, code in INGREDIENT_ATC.items():
        yield ATC_ID[code], ingredient


def hierarchy() -> tuple[tuple[int, int], ...]:
    """Direct parent -> child edges between standard and classification concepts."""
    return _SNOMED_EDGES + tuple(_atc_edges())


def ancestors(
    nodes: Iterable[int], edges: Iterable[tuple[int, int]]
) -> list[tuple[int, int, int, int]]:
    """`concept_ancestor` rows (ancestor, descendant, min levels, max levels): the transitive
    closure of `edges` with every node its own ancestor at level 0."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for parent, child in edges:
        children[parent].append(child)
    rows: list[tuple[int, int, int, int]] = []
    for root in sorted(set(nodes)):
        levels: dict[int, tuple[int, int]] = {root: (0, 0)}
        frontier = [(root, 0)]
        while frontier:
            node, depth = frontier.pop()
            for child in children[node]:
                low, high = levels.get(child, (depth + 1, depth + 1))
                levels[child] = (min(low, depth + 1), max(high, depth + 1))
                frontier.append((child, depth + 1))
        rows.extend((root, d, low, high) for d, (low, high) in sorted(levels.items()))
    return rows


def ancestor_rows() -> list[tuple[int, int, int, int]]:
    hierarchical = [c.concept_id for c in concepts() if c.standard in ("S", "C")]
    return ancestors(hierarchical, hierarchy())
