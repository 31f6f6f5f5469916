"""A node that is down shows as UNAVAILABLE while the others answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schema.codes import Jurisdiction
from tessera.local import LocalFederation
from tests.integration.federation_kit import post, start_federation

pytestmark = pytest.mark.integration

QUERY = """{ cohort(request: "DR-2026-0042",
  criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
  count { value status reasons { rule message } }
  byJurisdiction { jurisdiction status count { value status } }
} }"""


@pytest.fixture(scope="module")
def small_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = start_federation(
        tmp_path_factory.mktemp("small"), (Jurisdiction.FR, Jurisdiction.NL, Jurisdiction.NO)
    )
    yield fed
    fed.stop()


def test_a_dead_node_is_unavailable_and_the_others_answer(
    small_federation: LocalFederation,
) -> None:
    token = small_federation.researcher()
    small_federation.service("connector NL").kill()
    status, body = post(small_federation.gateway_url, {"query": QUERY}, token)
    assert status == 200
    result = body["data"]["cohort"]
    nodes = {n["jurisdiction"]: n for n in result["byJurisdiction"]}
    assert nodes["NL"]["status"] == "UNAVAILABLE"
    assert nodes["NL"]["count"] is None or nodes["NL"]["count"]["value"] is None
    assert nodes["FR"]["status"] == nodes["NO"]["status"] == "OK"
    assert result["count"]["value"] == nodes["FR"]["count"]["value"] + nodes["NO"]["count"]["value"]
    assert "PARTIAL" in {r["rule"] for r in result["count"]["reasons"]}


def test_demo_layout_files_exist(small_federation: LocalFederation) -> None:
    for path in (small_federation.federation_file, small_federation.token_file):
        assert Path(path).is_file()
