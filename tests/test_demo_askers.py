"""Who asks each demo example: the study team its `# asked by:` line names, each with a privacy
budget of its own (`tessera/demo.py`)."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from schema.approval import APPROVAL_CLAIM
from tessera.demo import DEFAULT_JURISDICTIONS, Asker, asked_by, credentials_for, example_files
from tessera.local import LocalFederation

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_line_names_an_organisation_and_a_subject() -> None:
    question = "# Coronado's model\n# asked by: Coronado study (coronado@x.eu)\nquery Q { x }\n"
    assert asked_by(question) == Asker("Coronado study", "coronado@x.eu")


@pytest.mark.parametrize(
    "question",
    [
        "query Q { x }",
        "# asked by: nobody in brackets\nquery Q { x }",
        "# asked by: Two (subjects here)\n",
        'query Q { cohort(note: "# asked by: Mallory (m@x.eu)") }',
    ],
)
def test_anything_else_is_the_demo_researcher(question: str) -> None:
    assert asked_by(question) is None


def test_every_shipped_example_names_its_study_and_studies_share_a_team() -> None:
    askers = {path.name[:2]: asked_by(path.read_text()) for path in example_files(EXAMPLES)}
    assert all(askers.values()), askers
    # Coronado asks its cohort, its model and its survival curve under one budget.
    assert askers["02"] == askers["08"] == askers["09"]
    assert askers["03"] == askers["07"]
    assert len(set(askers.values())) == 6


def test_credentials_name_the_asker_in_identity_and_permits(tmp_path: Path) -> None:
    federation = LocalFederation(
        directory=tmp_path, jurisdictions=DEFAULT_JURISDICTIONS, persons=10
    )
    federation.prepare_keys()
    asker = Asker("Coronado study", "coronado@studies.demo.tessera.eu")
    credentials = credentials_for(federation, asker)
    identity = jwt.decode(credentials.bearer or "", options={"verify_signature": False})
    assert identity["sub"] == asker.subject
    assert len(credentials.permits) == len(federation.members)
    for permit in credentials.permits:
        claims = jwt.decode(permit, options={"verify_signature": False})
        assert claims["sub"] == asker.subject
        assert claims[APPROVAL_CLAIM]["applicant"] == asker.organisation
