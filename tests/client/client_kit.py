"""Gateway answers as the gateway spells them, for the client's unit tests (the integration
tests ask a real federation: tests/integration/test_client.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from tessera.client.transport import FakeTransport, Headers, Reply


def count(value: int | None, status: str, *, rule: str = "NOISE", j: str | None = None) -> Any:
    return {
        "value": value,
        "status": status,
        "sd": 5.0,
        "bound": None,
        "contributors": None,
        "reasons": [{"rule": rule, "jurisdiction": j, "message": "m"}],
    }


def node(j: str, status: str = "OK", value: int | None = 100) -> Any:
    answered = status == "OK"
    return {
        "jurisdiction": j,
        "status": status,
        "latencyMs": 12.5 if answered else None,
        "error": None,
        "reasons": [] if answered else [{"rule": "PERMIT_MISSING", "jurisdiction": j}],
        "count": count(value, "PERTURBED", j=j) if answered else None,
        "privacy": {
            "sigma": 5.0,
            "questionRho": 0.04,
            "spentRho": 0.04,
            "capRho": 0.5,
            "dataRelease": "1",
        }
        if answered
        else None,
    }


def cell(dimensions: Sequence[tuple[str, str]], value: int | None, status: str) -> Any:
    return {
        "dimensions": [{"name": n, "value": v} for n, v in dimensions],
        "count": count(value, status, rule="NOISE" if value is not None else "BELOW_MINIMUM"),
    }


def cohort_with_a_denied_node() -> dict[str, Any]:
    """FR and DE answer, DK is denied; a table by JURISDICTION and AGE_BAND_5 (bands listed
    in string order, as a careless server might) and a pooled one by SEX."""
    bands = ["10-14", "15-19", "5-9"]  # "10-14" < "5-9" as strings
    by_country = [
        cell([("JURISDICTION", j), ("AGE_BAND_5", b)], None if b == "15-19" else 20, status)
        for j in ("FR", "DE")
        for b in bands
        for status in ["LOW" if b == "15-19" else "PERTURBED"]
    ]
    pooled = [
        cell([("SEX", "MALE")], 40, "PERTURBED"),
        cell([("SEX", "FEMALE")], 41, "PERTURBED"),
        cell([("SEX", "UNKNOWN")], None, "LOW"),
    ]
    return {
        "cohort": {
            "queryId": "q-1",
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "referenceDate": "2026-01-01",
            "count": {**count(200, "PERTURBED"), "contributors": ["FR", "DE"]},
            "byJurisdiction": [node("DK", "DENIED"), node("FR"), node("DE")],
            "b0": {"by": ["JURISDICTION", "AGE_BAND_5"], "cells": by_country},
            "b1": {"by": ["SEX"], "cells": pooled},
        }
    }


def graphql_reply(data: Any = None, errors: Sequence[Any] = (), status: int = 200) -> Reply:
    body: dict[str, Any] = {"data": data}
    if errors:
        body["errors"] = list(errors)
    return Reply(status, json.dumps(body).encode())


def error(code: str, message: str = "refused", **extensions: Any) -> Any:
    return {"message": message, "extensions": {"code": code, **extensions}}


def gateway(reply: Reply) -> FakeTransport:
    def answer(url: str, body: bytes, headers: Headers) -> Reply:
        return reply

    return FakeTransport(answer)


def unsigned_permit(request_id: str, application_id: str | None = None) -> str:
    """A token-shaped string whose payload names an approval (the client reads it unverified;
    only the gateway and nodes verify permits)."""

    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    approval = {"request_id": request_id, "application_id": application_id}
    return ".".join([part({"alg": "EdDSA"}), part({"approval": approval}), "c2ln"])
