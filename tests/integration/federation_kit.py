"""Helpers of the integration tests: a local federation of real processes on loopback, a
plain HTTP client independent of the code under test, and the truth of a count computed from
a node's database without the connector's compiler."""

from __future__ import annotations

import asyncio
import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb

from schema.codes import Jurisdiction
from tessera.credentials import Credentials
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import free_port

PERSONS = 20_000
JURISDICTIONS = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)


def start_federation(
    directory: Path,
    jurisdictions: tuple[Jurisdiction, ...],
    *,
    persons: int = PERSONS,
    **options: Any,
) -> LocalFederation:
    # The tests ask far more questions per minute than a researcher may; the rate limits
    # themselves are tested on their own (tests/gateway, test_shared_state).
    options.setdefault(
        "policies",
        policies_with_rate_limits(directory / "policies", per_minute=100_000, per_day=1_000_000),
    )
    federation = LocalFederation(
        directory=directory,
        jurisdictions=jurisdictions,
        persons=persons,
        seed=7,
        gateway_port=free_port(),
        node_ports=[free_port() for _ in jurisdictions],
        console=False,
        **options,
    )
    federation.prepare()
    try:
        asyncio.run(federation.start())
    except BaseException:
        federation.stop()
        raise
    return federation


Auth = Credentials | str | None


def http_post(
    url: str, body: bytes, headers: list[tuple[str, str]], *, timeout_s: float = 30
) -> tuple[int, dict[str, str], Any]:
    """A plain HTTP client (stdlib), independent of the code under test; a header may repeat.
    Returns the status, the response headers and the JSON body."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        connection.putrequest("POST", parts.path or "/")
        sent = [("Content-Type", "application/json"), *headers]
        for name, value in [*sent, ("Content-Length", str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"{}")
    finally:
        connection.close()


def post(
    url: str, payload: dict[str, Any], auth: Auth, *, timeout_s: float = 30
) -> tuple[int, dict[str, Any]]:
    """POST a GraphQL payload. `auth` is a bearer token alone, or credentials whose permits go
    in one `X-Tessera-Permit` line each."""
    credentials = Credentials(auth) if isinstance(auth, str) else auth
    headers = credentials.headers() if credentials is not None else []
    status, _, body = http_post(url, json.dumps(payload).encode(), headers, timeout_s=timeout_s)
    return status, body


def true_count(database: Path, sql_where: str) -> int:
    """The truth, computed independently of the connector's compiler."""
    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute(
            f"""
            SELECT count(DISTINCT p.person_id)
            FROM person p
            JOIN condition_occurrence co ON co.person_id = p.person_id
            JOIN concept c ON c.concept_id = co.condition_source_concept_id
            WHERE {sql_where}
              AND p.person_id NOT IN (SELECT person_id FROM tessera_optout)
            """  # noqa: S608 - fixed test SQL
        ).fetchone()
    assert row is not None
    return int(row[0])


# The question a node on another engine must answer as its DuckDB twin does (PostgreSQL, Spark).
TWIN_QUESTION = """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
  criteria: { age: { min: 40 }, conditions: [{ vocabulary: ICD10, code: "E11" }],
              drugs: [{ vocabulary: ATC, code: "A10" }] }) {
    byJurisdiction { jurisdiction status count { value status } }
    breakdown(by: [JURISDICTION, SEX, AGE_BAND_20]) {
      cells { dimensions { name value } count { value status } }
    }
} }"""
