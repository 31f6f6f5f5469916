"""The Python client and `tessera query` against a real federation (four connectors and a
gateway on loopback), as a researcher of their own organisation so that their questions
spend no other test's privacy budget."""

from __future__ import annotations

import csv
import io
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from schema.codes import Jurisdiction
from schema.errors import ErrorCode
from tessera.client import (
    POOLED,
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidQuery,
    PermissionDenied,
    read_csv,
)
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tessera.locations import GATEWAY_URL_FILE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = "client-tests@demo.tessera.eu"
ORGANISATION = "Client Tests Institute"
EXAMPLE = ROOT / "examples" / "01_diabetes_women_40_69.graphql"


@pytest.fixture(scope="module")
def credentials(federation: LocalFederation) -> Credentials:
    return federation.credentials(
        federation.permits(subject=SUBJECT, applicant=ORGANISATION), subject=SUBJECT
    )


@pytest.fixture(scope="module")
def demo_dir(
    federation: LocalFederation, credentials: Credentials, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The layout `tessera demo` writes (gateway URL, identity token, a permit per country),
    with this module's researcher's credentials."""
    directory = tmp_path_factory.mktemp("client-demo")
    (directory / GATEWAY_URL_FILE).write_text(federation.gateway_url + "\n")
    assert credentials.bearer is not None
    (directory / "researcher.jwt").write_text(credentials.bearer + "\n")
    (directory / "permits").mkdir()
    for jurisdiction, permit in zip(federation.members, credentials.permits, strict=True):
        (directory / "permits" / f"{jurisdiction.value.lower()}.jwt").write_text(permit + "\n")
    return directory


def test_three_lines_to_a_full_grid_in_numeric_order(demo_dir: Path) -> None:
    client = Client.demo(demo_dir)
    answer = client.cohort(concepts=["ICD10:E11"], by=["SEX", "AGE_BAND_10"])
    frame = answer.frame()
    # Every sex (and the unknown one) times every band of 0 to 130: 3 x 14 cells.
    assert len(frame) == 3 * 14
    assert list(frame["sex"].unique()) == ["FEMALE", "MALE", "UNKNOWN"]
    for _, of_sex in frame.groupby("sex"):
        assert list(of_sex["age_min"]) == list(range(0, 140, 10))
        assert list(of_sex["age_max"]) == list(range(9, 140, 10))
    assert set(frame["jurisdiction"]) == {POOLED}
    assert frame["status"].notna().all()
    released = frame[frame["value"].notna()]
    assert len(released) > 0
    assert (released["sd"] > 0).all()
    assert set(frame.loc[frame["value"].isna(), "status"]) <= {"LOW", "SUPPRESSED"}
    assert answer.count is not None
    assert answer.count.contributors is not None
    assert len(answer.trace_id or "") == 32
    assert [n.status for n in answer.nodes] == ["OK"] * 4


async def test_async_client_with_a_permit_missing_keeps_the_country_in_the_grid(
    federation: LocalFederation, credentials: Credentials
) -> None:
    left_out = Jurisdiction.DK
    permits = [
        p for j, p in zip(federation.members, credentials.permits, strict=True) if j != left_out
    ]
    async with AsyncClient(
        federation.gateway_url, token=credentials.bearer, permits=permits
    ) as client:
        answer = await client.cohort(
            concepts=["ICD10:E11"], age=(40, 69), by=["JURISDICTION", "AGE_BAND_10"], total=False
        )
    frame = answer.frame()
    assert len(frame) == 4 * 3  # DK's three bands too, though the gateway listed none
    dk = frame[frame["jurisdiction"] == left_out.value]
    assert list(dk["age_min"]) == [40, 50, 60]
    assert dk["value"].isna().all()
    assert dk["status"].isna().all()
    assert set(dk["node_status"]) == {"DENIED"}
    assert set(dk["reasons"]) == {"DK:PERMIT_MISSING"}
    others = frame[frame["jurisdiction"] != left_out.value]
    assert set(others["node_status"]) == {"OK"}
    assert others["status"].notna().all()


def test_refusals_raise_typed_errors_with_the_gateways_codes(
    federation: LocalFederation, credentials: Credentials
) -> None:
    url = federation.gateway_url
    with pytest.raises(AuthenticationError) as bad_token:
        Client(url, token="not-a-token", permits=credentials.permits).cohort(concepts=["ICD10:E11"])
    assert bad_token.value.code == ErrorCode.TOKEN_MALFORMED
    with pytest.raises(PermissionDenied) as no_permit:
        Client(url, token=credentials.bearer, request="DR-2026-0042").cohort(concepts=["ICD10:E11"])
    assert no_permit.value.code == ErrorCode.FORBIDDEN
    client = Client(url, token=credentials.bearer, permits=credentials.permits)
    with pytest.raises(PermissionDenied) as other_request:
        client.cohort(concepts=["ICD10:E11"], request="DR-1999-0001")
    assert other_request.value.code == ErrorCode.REQUEST_MISMATCH
    with pytest.raises(InvalidQuery) as unknown_field:
        client.execute('{ cohort(request: "DR-2026-0042", criteria: {}) { nope } }')
    assert unknown_field.value.code == ErrorCode.GRAPHQL_VALIDATION_FAILED
    with pytest.raises(InvalidQuery) as bad_code:
        client.cohort(concepts=["ICD10:not a code"])
    assert bad_code.value.code == ErrorCode.INVALID_CODE


def test_export_round_trip_of_a_real_answer(demo_dir: Path, tmp_path: Path) -> None:
    answer = Client.demo(demo_dir).execute(EXAMPLE.read_text()).answer
    frame = answer.frame()
    assert list(frame["jurisdiction"].unique()) == ["DK", "FI", "FR", "DE"]
    pd.testing.assert_frame_equal(read_csv(answer.to_csv(tmp_path / "a.csv")), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(answer.to_parquet(tmp_path / "a.pq")), frame)


def tessera_query(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera", "query", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def test_tessera_query_prints_an_example_as_csv(
    federation: LocalFederation, credentials: Credentials, tmp_path: Path
) -> None:
    token = tmp_path / "me.jwt"
    token.write_text(credentials.bearer or "")
    permits = []
    for i, permit in enumerate(credentials.permits):
        permits.append(tmp_path / f"p{i}.jwt")
        permits[-1].write_text(permit)
    done = tessera_query(
        str(EXAMPLE),
        "--csv",
        "--gateway",
        federation.gateway_url,
        "--token",
        str(token),
        "--permit",
        *map(str, permits),
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: no progress
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    tables = [r["table"] for r in rows]
    assert tables.count("count") == 1
    assert tables.count("byJurisdiction") == 4
    cells = [r for r in rows if r["table"] == "JURISDICTION,AGE_BAND_10"]
    assert [(r["jurisdiction"], r["age_min"], r["age_max"]) for r in cells[:3]] == [
        ("DK", "40", "49"),
        ("DK", "50", "59"),
        ("DK", "60", "69"),
    ]
    assert len(cells) == 4 * 3
    assert all(r["status"] in {"PERTURBED", "LOW"} for r in cells)
    assert all((r["value"] == "") == (r["status"] == "LOW") for r in cells)


def test_tessera_query_flags_table_and_parquet_from_the_demo_directory(
    demo_dir: Path, tmp_path: Path
) -> None:
    gateway = (demo_dir / GATEWAY_URL_FILE).read_text().strip()
    out = tmp_path / "e11.parquet"
    done = tessera_query(
        "--concept", "ICD10:E11", "--by", "SEX,AGE_BAND_20", "--demo-dir", str(demo_dir),
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stderr
    frame = pd.read_parquet(out)
    assert len(frame[frame["table"] == "SEX,AGE_BAND_20"]) == 3 * 7
    table = tessera_query("--concept", "ICD10:E11", "--by", "SEX", "--demo-dir", str(demo_dir))
    assert table.returncode == 0, table.stderr
    assert "trace " in table.stdout
    assert "pooled count:" in table.stdout
    for jurisdiction in ("DK", "FI", "FR", "DE"):
        assert f"{jurisdiction}       OK" in table.stdout
    no_demo = ["--concept", "ICD10:E11", "--demo-dir", str(tmp_path / "none")]
    unsure = tessera_query(*no_demo, "--gateway", gateway)
    assert unsure.returncode == 2
    assert "say which data request" in unsure.stderr
    refused = tessera_query(*no_demo, "--gateway", gateway, "--request", "DR-2026-0042")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error UNAUTHENTICATED:")


def test_tessera_query_shows_progress_and_node_status_on_a_terminal(demo_dir: Path) -> None:
    controller, terminal = pty.openpty()
    shown = bytearray()

    def read_terminal() -> None:
        # Read while the command runs, so that it never blocks on a full terminal buffer.
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the command closed its end
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        command = subprocess.Popen(
            [sys.executable, "-m", "tessera", "query", "--concept", "ICD10:I10", "--by", "SEX",
             "--demo-dir", str(demo_dir), "--json"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        stdout, _ = command.communicate(timeout=120)
    finally:
        os.close(terminal)
        reader.join(timeout=10)
        os.close(controller)
    assert command.returncode == 0
    text = shown.decode()
    # Seconds counted while waiting, naming the nodes once the members are known.
    assert re.search(r"asking (the federation|4 nodes \(FR, DE, FI, DK\)) … +[0-9.]+ s", text)
    assert "cohort: answered in" in text
    for jurisdiction in ("DK", "FI", "FR", "DE"):
        assert f"  {jurisdiction}  OK" in text
    assert '"cohort"' in stdout  # the gateway's data, as JSON, on standard output


def test_the_client_example_runs(demo_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "client.py"), str(demo_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "without permits: FORBIDDEN" in done.stdout
    assert "Coronado, died within 28 days:" in done.stdout
    assert (tmp_path / "e11_women.csv").is_file()
    assert (tmp_path / "e11.parquet").is_file()
