"""`tessera cohort import` and the client's `criteria_from_atlas`: the translation printed to
paste (GraphQL input literals) or as variables (JSON), refusals listed by path with exit
status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schema.codes import EventDomain
from schema.errors import ErrorCode
from tessera.client import InvalidQuery, criteria_from_atlas

FIXTURES = Path(__file__).parent / "fixtures"


def tessera(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera", "cohort", "import", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def test_graphql_input_to_paste() -> None:
    done = tessera(FIXTURES / "psoriasis_vulgaris_first_dx.json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [
        'index: { events: [{ domain: CONDITION, codes: [{ vocabulary: SNOMED, code: "200975007", '
        "descendants: true }] }], occurrence: FIRST, priorObservationDays: 365 }",
        "criteria: {}",
    ]
    assert "# ignored: CollapseSettings: " in done.stdout


def test_json_variables_from_standard_input() -> None:
    text = (FIXTURES / "inpatient_visits.json").read_text()
    done = tessera("-", "--format", "json", stdin=text)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "index": {
            "events": [{"domain": "VISIT", "visit": "INPATIENT"}],
            "occurrence": "ALL",
            "priorObservationDays": 0,
        },
        "criteria": {},
    }
    assert "ignored: EndStrategy: " in done.stderr


def test_a_whole_question_for_tessera_query() -> None:
    done = tessera(
        FIXTURES / "all_cause_mortality.json", "--format", "document", "--request", "DR-7"
    )
    assert done.returncode == 0, done.stderr
    assert '    request: "DR-7"' in done.stdout.splitlines()
    assert (
        "    index: { events: [{ domain: DEATH }], occurrence: FIRST, priorObservationDays: 0 }"
        in (done.stdout.splitlines())
    )


def test_refusals_are_listed_with_status_2() -> None:
    fixture = FIXTURES / "multiple_myeloma_2dx.json"
    done = tessera(fixture)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    first, *reasons = done.stderr.splitlines()
    assert first == (
        f"tessera cohort import: {fixture}: 4 parts of the definition cannot be translated "
        "(docs/atlas-import.md):"
    )
    assert reasons[1].startswith(
        "  UNSUPPORTED_ELEMENT: PrimaryCriteria.CriteriaList[1].Observation: "
    )


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = tessera(tmp_path / "nope.json")
    assert done.returncode == 2
    assert (
        done.stderr
        == f"tessera cohort import: {tmp_path / 'nope.json'}: No such file or directory\n"
    )


def test_the_client_translates_or_raises_with_every_refusal() -> None:
    cohort = criteria_from_atlas(FIXTURES / "all_cause_mortality.json")
    assert cohort.index.events[0].domain is EventDomain.DEATH
    assert cohort.arguments() == {
        "index": {
            "events": [{"domain": "DEATH"}],
            "occurrence": "FIRST",
            "priorObservationDays": 0,
        },
        "criteria": {},
    }
    with pytest.raises(InvalidQuery) as caught:
        criteria_from_atlas((FIXTURES / "sulfasalazine_new_users_prior_ra.json").read_text())
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    refusals = caught.value.details["refusals"]
    assert len(refusals) == 7
    assert (
        refusals[-1]["path"] == "InclusionRules[0].expression.CriteriaList[1].Criteria.Observation"
    )
