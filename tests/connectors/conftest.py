"""A tiny hand-written OMOP CDM database whose counts are known exactly.

Reference year 2024 (see `REFERENCE_DATE`). Persons 1–50:

| persons | born | age | sex            | events                                                  |
|---------|------|-----|----------------|---------------------------------------------------------|
| 1–10    | 1964 | 60  | odd F, even M  | T2DM: SNOMED 201826, source ICD10 E11.9, 2019-03-01     |
| 11–15   | 1979 | 45  |                | T2DM with complication: SNOMED 443732 (a descendant of  |
|         |      |     |                | 201826), source ICD10 E11.65, 2021-05-10                |
| 16–20   | 1979 | 45  |                | unmapped (concept 0), source ICD10 E11, 2023-01-15      |
| 21–25   | 1994 | 30  |                | T1DM: SNOMED 201254, source ICD10 E10, 2020-07-01       |
| 26–35   | 1994 | 30  | (26–30)        | hypertension: SNOMED 320128, source ICD10 I10,          |
|         | 2004 | 20  | (31–35)        | 2022-02-02; persons 1–5 also, 2018-01-01                |
| 36–40   | 2004 | 20  |                | person 40: glibenclamide, ATC A10BB01 as source only    |
| 41–48   | 1950 | 74  |                | —                                                       |
| 49      | 1980 | 44  | unknown (0)    | no observation period                                   |
| 50      | 2025 | —   |                | born after the reference year: never counted            |

Also: person 2 has an earlier E11.9 on 2016-05-05. Drugs: metformin 500 mg tablet (RxNorm
1503328, a descendant of ingredient 1503297 and of ATC A10 > A10B > A10BA > A10BA02) for
persons 1–10 on 2019-04-01 and 11–12 on 2021-06-01; lisinopril (RxNorm 1308216) for 26–30 on
2022-03-01. Measurements: HbA1c (LOINC 4548-4) for persons 1–20 on 2023-06-01 with value
6.0 + id/10 (6.1 … 8.0); person 21 has one without a value. Observation periods start on
2015-01-01 (odd ids) or 2018-01-01 (even ids); person 1 has another from 2010-01-01.
Deaths: persons 41–44 on 2023-03-01, person 2 on 2024-05-01. Opted out: persons 3 and 26.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import duckdb
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connectors.omop import CDM_DDL, TESSERA_DDL
from schema.wire import REQUEST_TOKEN_TYP, body_hash
from tests.connectors.connector_kit import approval_token, write_hdab_public_pem

REFERENCE_DATE = dt.date(2024, 6, 30)
OPTOUT_VERSION = "optout-2024-06-01"
DATA_RELEASE = "cdm-2024-06"
OPTED_OUT = (3, 26)
# (person_id, death_date)
DEATHS = [(p, "2023-03-01") for p in range(41, 45)] + [(2, "2024-05-01")]

# concept_id, name, vocabulary, class, standard, code
CONCEPTS: list[tuple[int, str, str, str, str | None, str]] = [
    (8507, "MALE", "Gender", "Gender", "S", "M"),
    (8532, "FEMALE", "Gender", "Gender", "S", "F"),
    (1001, "Type 2 diabetes mellitus", "ICD10", "3-char nonbill code", None, "E11"),
    (1002, "Type 2 DM without complications", "ICD10", "4-char billing code", None, "E11.9"),
    (1003, "Type 2 DM with hyperglycemia", "ICD10", "5-char billing code", None, "E11.65"),
    (1004, "Type 1 diabetes mellitus", "ICD10", "3-char nonbill code", None, "E10"),
    (1005, "Essential hypertension", "ICD10", "3-char billing code", None, "I10"),
    (201826, "Type 2 diabetes mellitus", "SNOMED", "Clinical Finding", "S", "44054006"),
    (443732, "Disorder due to T2DM", "SNOMED", "Clinical Finding", "S", "422014003"),
    (201254, "Type 1 diabetes mellitus", "SNOMED", "Clinical Finding", "S", "46635009"),
    (320128, "Essential hypertension", "SNOMED", "Clinical Finding", "S", "59621000"),
    (2001, "DRUGS USED IN DIABETES", "ATC", "ATC 2nd", "C", "A10"),
    (2002, "BLOOD GLUCOSE LOWERING DRUGS, EXCL. INSULINS", "ATC", "ATC 3rd", "C", "A10B"),
    (2003, "Biguanides", "ATC", "ATC 4th", "C", "A10BA"),
    (2004, "metformin", "ATC", "ATC 5th", "C", "A10BA02"),
    (2006, "glibenclamide", "ATC", "ATC 5th", "C", "A10BB01"),
    (1503297, "metformin", "RxNorm", "Ingredient", "S", "6809"),
    (1503328, "metformin 500 MG Oral Tablet", "RxNorm", "Clinical Drug", "S", "861007"),
    (1308216, "lisinopril", "RxNorm", "Ingredient", "S", "29046"),
    (3004410, "Hemoglobin A1c", "LOINC", "Lab Test", "S", "4548-4"),
]

# Each chain lists an ancestor and its descendants in order; every pair is written.
HIERARCHIES: list[tuple[int, ...]] = [
    (201826, 443732),
    (2001, 2002, 2003, 2004, 1503297, 1503328),
    (201254,),
    (320128,),
    (1308216,),
    (3004410,),
]


def _birth_year(person_id: int) -> int:
    if person_id <= 10:
        return 1964
    if person_id <= 20:
        return 1979
    if person_id <= 30:
        return 1994
    if person_id <= 40:
        return 2004
    if person_id <= 48:
        return 1950
    return 1980 if person_id == 49 else 2025


def _gender(person_id: int) -> int:
    if person_id == 49:
        return 0
    return 8532 if person_id % 2 else 8507


def _conditions() -> list[tuple[int, int, int, str]]:
    """(person_id, condition_concept_id, condition_source_concept_id, start date)"""
    rows = [(p, 201826, 1002, "2019-03-01") for p in range(1, 11)]
    rows += [(2, 201826, 1002, "2016-05-05")]
    rows += [(p, 443732, 1003, "2021-05-10") for p in range(11, 16)]
    rows += [(p, 0, 1001, "2023-01-15") for p in range(16, 21)]
    rows += [(p, 201254, 1004, "2020-07-01") for p in range(21, 26)]
    rows += [(p, 320128, 1005, "2022-02-02") for p in range(26, 36)]
    rows += [(p, 320128, 1005, "2018-01-01") for p in range(1, 6)]
    return rows


def _drugs() -> list[tuple[int, int, int, str]]:
    """(person_id, drug_concept_id, drug_source_concept_id, start date)"""
    rows = [(p, 1503328, 0, "2019-04-01") for p in range(1, 11)]
    rows += [(p, 1503328, 0, "2021-06-01") for p in (11, 12)]
    rows += [(p, 1308216, 0, "2022-03-01") for p in range(26, 31)]
    rows += [(40, 0, 2006, "2020-01-01")]
    return rows


def _measurements() -> list[tuple[int, int, str, float | None]]:
    """(person_id, measurement_concept_id, date, value_as_number)"""
    rows: list[tuple[int, int, str, float | None]] = [
        (p, 3004410, "2023-06-01", round(6.0 + p / 10, 1)) for p in range(1, 21)
    ]
    rows.append((21, 3004410, "2023-06-01", None))
    return rows


def _observation_periods() -> list[tuple[int, str]]:
    rows = [(p, "2015-01-01" if p % 2 else "2018-01-01") for p in range(1, 49)]
    rows.append((1, "2010-01-01"))
    rows.append((50, "2025-01-01"))
    return rows


def person_index(person_id: int) -> int:
    """The fixture's person index of a person: in another order than the ids, as after a
    rebuild of the CDM."""
    return 50 - person_id


def build_database(
    path: Path, *, tessera_tables: bool = True, opted_out: Sequence[int] = OPTED_OUT
) -> Path:
    with duckdb.connect(str(path)) as con:
        for ddl in CDM_DDL:
            con.execute(ddl)
        if tessera_tables:
            for ddl in TESSERA_DDL:
                con.execute(ddl)
        con.executemany(
            "INSERT INTO concept VALUES (?, ?, 'Domain', ?, ?, ?, ?, DATE '1970-01-01', "
            "DATE '2099-12-31', NULL)",
            [(cid, name, vocab, cls, std, code) for cid, name, vocab, cls, std, code in CONCEPTS],
        )
        ancestors = [
            (chain[i], chain[j], j - i, j - i)
            for chain in HIERARCHIES
            for i in range(len(chain))
            for j in range(i, len(chain))
        ]
        con.executemany("INSERT INTO concept_ancestor VALUES (?, ?, ?, ?)", ancestors)
        con.executemany(
            "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
            "ethnicity_concept_id) VALUES (?, ?, ?, 0, 0)",
            [(p, _gender(p), _birth_year(p)) for p in range(1, 51)],
        )
        con.executemany(
            "INSERT INTO observation_period VALUES (?, ?, ?, DATE '2024-12-31', 32817)",
            [(n, p, start) for n, (p, start) in enumerate(_observation_periods(), 1)],
        )
        con.executemany(
            "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, "
            "condition_concept_id, condition_start_date, condition_type_concept_id, "
            "condition_source_concept_id) VALUES (?, ?, ?, ?, 32817, ?)",
            [(n, p, c, d, s) for n, (p, c, s, d) in enumerate(_conditions(), 1)],
        )
        con.executemany(
            "INSERT INTO drug_exposure (drug_exposure_id, person_id, drug_concept_id, "
            "drug_exposure_start_date, drug_exposure_end_date, drug_type_concept_id, "
            "drug_source_concept_id) VALUES (?, ?, ?, ?, ?, 32817, ?)",
            [(n, p, c, d, d, s) for n, (p, c, s, d) in enumerate(_drugs(), 1)],
        )
        con.executemany(
            "INSERT INTO measurement (measurement_id, person_id, measurement_concept_id, "
            "measurement_date, measurement_type_concept_id, value_as_number, "
            "measurement_source_concept_id) VALUES (?, ?, ?, ?, 32817, ?, 0)",
            [(n, p, c, d, v) for n, (p, c, d, v) in enumerate(_measurements(), 1)],
        )
        con.executemany(
            "INSERT INTO death (person_id, death_date, death_type_concept_id) VALUES (?, ?, 32817)",
            DEATHS,
        )
        if tessera_tables:
            if opted_out:
                con.executemany("INSERT INTO tessera_optout VALUES (?)", [(p,) for p in opted_out])
            con.execute(
                "INSERT INTO tessera_optout_register VALUES (?, TIMESTAMP '2024-06-01 00:00:00')",
                [OPTOUT_VERSION],
            )
            con.executemany(
                "INSERT INTO tessera_person VALUES (?, ?)",
                [(p, person_index(p)) for p in range(1, 51)],
            )
            con.execute(
                "INSERT INTO tessera_data_release VALUES (?, TIMESTAMP '2024-06-01 00:00:00')",
                [DATA_RELEASE],
            )
    return path


@pytest.fixture(scope="session")
def build_omop_db() -> Callable[..., Path]:
    """`build_database`, for tests that need a variant of the fixture database."""
    return build_database


@pytest.fixture(scope="session")
def omop_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_database(tmp_path_factory.mktemp("omop") / "fixture.duckdb")


@pytest.fixture(scope="session")
def bare_cdm_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same CDM without Tessera's tables, as a hub has it before `prepare`."""
    return build_database(tmp_path_factory.mktemp("bare") / "bare.duckdb", tessera_tables=False)


@pytest.fixture(scope="session")
def omop_con(omop_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(omop_db), read_only=True)
    yield con
    con.close()


# -- the gateway's request tokens ------------------------------------------------------------

GATEWAY_KID = "gateway-2024"
GATEWAY_ISSUER = "tessera-gateway"
NODE_ID = "tessera-node-fr"


@pytest.fixture(scope="session")
def gateway_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def gateway_public_pem(
    tmp_path_factory: pytest.TempPathFactory, gateway_key: Ed25519PrivateKey
) -> Path:
    path = tmp_path_factory.mktemp("keys") / "gateway.pem"
    path.write_bytes(
        gateway_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return path


Sign = Callable[..., str]


@pytest.fixture
def sign(gateway_key: Ed25519PrivateKey) -> Sign:
    """A gateway request token for `body`; keyword arguments change or drop (None) a claim,
    or set the header's `typ`/`kid`, the signing `key`, or the `lifetime`/`issued_at`."""

    def sign_body(
        body: bytes,
        *,
        key: Ed25519PrivateKey | None = None,
        typ: str = REQUEST_TOKEN_TYP,
        kid: str = GATEWAY_KID,
        issued_at: float | None = None,
        lifetime: float = 30,
        **claims: object,
    ) -> str:
        iat = int(time.time() if issued_at is None else issued_at)
        payload: dict[str, object] = {
            "iss": GATEWAY_ISSUER,
            "aud": NODE_ID,
            "iat": iat,
            "exp": int(iat + lifetime),
            "jti": uuid.uuid4().hex,
            "bsh": body_hash(body),
        }
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(
            payload, key or gateway_key, algorithm="EdDSA", headers={"typ": typ, "kid": kid}
        )

    return sign_body


# -- the researcher's approval, as the node's HDAB issues it (see connector_kit) -------------


@pytest.fixture(scope="session")
def hdab_public_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hdab_public_pem(tmp_path_factory.mktemp("hdab") / "hdab.pem")


@pytest.fixture
def approve() -> Callable[..., str]:
    return approval_token
