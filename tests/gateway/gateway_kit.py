"""Helpers shared by the gateway tests: keys, federation files, tokens, node answers.

Imported as `tests.gateway.gateway_kit` (`tests/test_kits.py`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.federation import NodeInfo
from gateway.nodes import Handler, NodeOutcome, check_response
from gateway.planner import Plan, plan_query
from policies.disclosure import NODE_RULES, CellContext, protect, release
from policies.domain import table_domain
from policies.loader import DEFAULT_DIRECTORY, load_policy_set
from schema.approval import APPROVAL_CLAIM, Approval
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus
from schema.query import Breakdown
from schema.result import Value
from schema.wire import NodeCell, NodeRequest, NodeResponse, NodeTable, PrivacySpend
from tests.token_kit import mint_jwt
from trust.keys import jwks

# A POST of a GraphQL query to the test app (the `graphql` fixture).
Post = Callable[..., Any]

COUNT = MeasureKind.PERSON_COUNT
GATEWAY_ID = "tessera-gateway"
ISSUER = "https://hdab.test.tessera.eu"
REQUEST_ID = "DR-2026-0042"
HDAB_KID = "hdab-1"
PEM_ISSUER_KEYS = 'public_key = "keys/hdab.pub.pem"'
JWKS_ISSUER_KEYS = 'jwks_file = "keys/hdab.jwks.json"'
MEMBERS = (Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO)

SEX: Breakdown = (Dimension.SEX,)
AGE10: Breakdown = (Dimension.AGE_BAND_10,)

# Counts per node and table: `()` is the total; other tables map a key to a count. A count
# is an int (released by an honest node under its own rules) or a `Value` (sent as is).
Counts = Mapping[Breakdown, Any]

# Numbers every node releases (all at least 11, the strictest minimum) unless a test says so.
DEFAULT_COUNTS: dict[Jurisdiction, Counts] = {
    Jurisdiction.FR: {
        (): 300,
        SEX: {("FEMALE",): 180, ("MALE",): 120},
        AGE10: {("40-49",): 100, ("50-59",): 200},
    },
    Jurisdiction.DK: {
        (): 150,
        SEX: {("FEMALE",): 90, ("MALE",): 60},
        AGE10: {("40-49",): 70, ("50-59",): 80},
    },
    Jurisdiction.NO: {
        (): 50,
        SEX: {("FEMALE",): 30, ("MALE",): 20},
        AGE10: {("40-49",): 20, ("50-59",): 30},
    },
}

POLICIES = load_policy_set()
SUBJECT = "researcher@test.tessera.eu"
APPROVAL = Approval(
    request_id=REQUEST_ID, purpose="scientific_research", jurisdictions=list(MEMBERS)
)


@dataclass(frozen=True)
class Keys:
    gateway: Ed25519PrivateKey
    hdab: Ed25519PrivateKey


def pem_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_public(key: Any) -> bytes:
    public = key.public_key() if hasattr(key, "public_key") else key
    data: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def write_jwks(path: Path, keys: Mapping[str, Any]) -> Path:
    """A JWKS file of the public halves of `keys` (by kid)."""
    public = {kid: k.public_key() if hasattr(k, "public_key") else k for kid, k in keys.items()}
    path.write_text(json.dumps(jwks(public)))
    return path


def write_federation(
    directory: Path,
    keys: Keys,
    nodes: Mapping[Jurisdiction, str] | None = None,
    *,
    issuer_keys: str = PEM_ISSUER_KEYS,
) -> Path:
    """A federation file trusting the test HDAB with `issuer_keys` (the TOML lines naming its
    key source: its PEM key by default, or `JWKS_ISSUER_KEYS`, a JWKS with kid `HDAB_KID`)."""
    (directory / "keys").mkdir(exist_ok=True)
    (directory / "keys" / "gateway.key.pem").write_bytes(pem_private(keys.gateway))
    (directory / "keys" / "hdab.pub.pem").write_bytes(pem_public(keys.hdab))
    write_jwks(directory / "keys" / "hdab.jwks.json", {HDAB_KID: keys.hdab})
    nodes = nodes or {j: f"http://127.0.0.1:9/{j.value.lower()}" for j in MEMBERS}
    text = (
        f'[gateway]\nid = "{GATEWAY_ID}"\nsigning_key = "keys/gateway.key.pem"\n'
        'signing_kid = "gateway-1"\n\n'
        f'[[issuers]]\niss = "{ISSUER}"\n{issuer_keys}\n'
        'algorithms = ["EdDSA"]\n\n'
    )
    for j, url in nodes.items():
        text += (
            f'[[nodes]]\njurisdiction = "{j.value}"\n'
            f'node_id = "tessera-node-{j.value.lower()}"\nurl = "{url}"\n\n'
        )
    path = directory / "federation.toml"
    path.write_text(text)
    return path


# A federation as the EHDS has it: each member's own HDAB, trusted for its jurisdiction only,
# and an identity issuer whose tokens are never permits (`write_hdab_federation`).
IDENTITY = "https://id.test.tessera.eu"
HDAB_KEYS = {j: Ed25519PrivateKey.generate() for j in MEMBERS}
IDENTITY_KEY = Ed25519PrivateKey.generate()


def hdab(jurisdiction: Jurisdiction) -> str:
    return f"https://hdab.{jurisdiction.value.lower()}.test"


def write_hdab_federation(
    directory: Path, keys: Keys, *, extra_issuers: str = "", node_datasets: bool = False
) -> Path:
    """A federation file trusting `IDENTITY` for identity only and each member's HDAB for
    its own jurisdiction (`HDAB_KEYS`); `node_datasets` names each node's dataset too."""
    (directory / "keys").mkdir(exist_ok=True)
    (directory / "keys" / "gateway.key.pem").write_bytes(pem_private(keys.gateway))
    (directory / "keys" / "identity.pub.pem").write_bytes(pem_public(IDENTITY_KEY))
    text = (
        f'[gateway]\nid = "{GATEWAY_ID}"\nsigning_key = "keys/gateway.key.pem"\n'
        'signing_kid = "gateway-1"\n\n'
        f'[[issuers]]\niss = "{IDENTITY}"\npublic_key = "keys/identity.pub.pem"\n'
        'algorithms = ["EdDSA"]\njurisdictions = []\n\n'
    )
    for j, key in HDAB_KEYS.items():
        code = j.value.lower()
        (directory / "keys" / f"hdab-{code}.pub.pem").write_bytes(pem_public(key))
        text += (
            f'[[issuers]]\niss = "{hdab(j)}"\npublic_key = "keys/hdab-{code}.pub.pem"\n'
            f'algorithms = ["EdDSA"]\njurisdictions = ["{j.value}"]\n\n'
        )
    text += extra_issuers
    for j in MEMBERS:
        text += (
            f'[[nodes]]\njurisdiction = "{j.value}"\nnode_id = "tessera-node-{j.value.lower()}"\n'
            f'url = "http://127.0.0.1:9/{j.value.lower()}"\n'
        )
        if node_datasets:
            text += f'datasets = ["tessera-node-{j.value.lower()}"]\n'
        text += "\n"
    path = directory / "federation.toml"
    path.write_text(text)
    return path


def revoking(directory: Path, jurisdiction: Jurisdiction, *request_ids: str) -> Path:
    """A copy of the shipped policy directory in which `jurisdiction` revoked these permits
    (by data request id); the same directory if it is one already."""
    if not (directory / "eu.toml").exists():
        shutil.copytree(DEFAULT_DIRECTORY, directory)
    path = directory / "jurisdictions" / f"{jurisdiction.value.lower()}.toml"
    listed = ", ".join(f'"{r}"' for r in request_ids)
    path.write_text(
        re.sub(
            r"(\[approvals\.revoked\]\nvalue = )\[[^\]]*\]", rf"\g<1>[{listed}]", path.read_text()
        )
    )
    return directory


def identity_token(**claims: Any) -> str:
    """A researcher's bearer token from `IDENTITY`: who they are, no approval."""
    return mint_jwt(IDENTITY_KEY, issuer=IDENTITY, audience=GATEWAY_ID, subject=SUBJECT, **claims)


def permit(
    jurisdiction: Jurisdiction,
    *,
    by: Jurisdiction | None = None,
    key: Any = None,
    now: float | None = None,
    **approval: Any,
) -> str:
    """`jurisdiction`'s permit from its own HDAB (or `by`'s, or signed with `key`): its own
    data request `DR-<code>`, part of application `REQUEST_ID`; `approval` replaces fields
    (None removes one), `iss`, `sub`, `exp` and `roles` replace claims."""
    issuer = jurisdiction if by is None else by
    fields: dict[str, Any] = {
        "request_id": f"DR-{jurisdiction.value}",
        "application_id": REQUEST_ID,
        "purpose": "scientific_research",
        "jurisdictions": [jurisdiction.value],
        "datasets": [f"tessera-node-{jurisdiction.value.lower()}"],
        "applicant": "Example Research Hospital",
        "applicant_kind": "public_body",
    }
    claims = {
        name: approval.pop(name) for name in ("iss", "sub", "exp", "roles") if name in approval
    }
    fields.update(approval)
    return mint_jwt(
        HDAB_KEYS[issuer] if key is None else key,
        issuer=hdab(issuer),
        audience=GATEWAY_ID,
        subject=SUBJECT,
        approval=fields,
        now=now,
        **claims,
    )


def mint(
    keys: Keys,
    *,
    key: Any = None,
    algorithm: str = "EdDSA",
    jurisdictions: tuple[Jurisdiction, ...] = MEMBERS,
    request_id: str = REQUEST_ID,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A researcher token signed by the test HDAB; keyword claims replace the defaults
    (None removes a claim)."""
    return mint_jwt(
        keys.hdab if key is None else key,
        issuer=ISSUER,
        audience=GATEWAY_ID,
        subject=SUBJECT,
        algorithm=algorithm,
        headers=headers,
        **{
            APPROVAL_CLAIM: Approval(
                request_id=request_id,
                purpose="scientific_research",
                jurisdictions=list(jurisdictions),
            ),
            **claims,
        },
    )


def node_response(
    request: NodeRequest, counts: Counts, *, honest: bool = True, **fields: Any
) -> NodeResponse:
    """The answer of a node holding `counts` (0 for every other cell of a table's domain).
    An honest node releases every cell of the domain through its own rules, with noise of its
    profile's sd that happens to be 0 here (so tests can check the arithmetic); a dishonest
    one sends its counts as EXACT, small ones too."""
    j = request.jurisdiction
    profile = POLICIES.profile(j)
    context = CellContext(profile=profile, jurisdiction=j)
    sd = profile.noise_sd(request.noise)

    def value(count: Any) -> Value:
        if isinstance(count, Value):
            return count
        if not honest:
            return Value.exact(count)
        return protect(release(count, sd, context), context, NODE_RULES)

    tables = []
    for by in request.query.tables:
        given = {(): counts[()]} if by == () else counts.get(by, {})
        cells = {k: given.get(k, 0) for k in table_domain(by, request.query)} if honest else given
        tables.append(
            NodeTable(
                by=by,
                cells=[NodeCell(key=list(k), values={COUNT: value(c)}) for k, c in cells.items()],
            )
        )
    answer: dict[str, Any] = {
        "query_id": request.query_id,
        "jurisdiction": j,
        "status": NodeStatus.OK,
        "tables": tables,
        "elapsed_ms": 1.0,
        "privacy": PrivacySpend(
            sigma=sd,
            question_rho=len(tables) / (2 * sd * sd),
            spent_rho=len(tables) / (2 * sd * sd),
            cap_rho=profile.rho_per_applicant,
            data_release="test-1",
        ),
        **fields,
    }
    return NodeResponse.model_validate(answer)


def counts_handler(
    counts: Mapping[Jurisdiction, Counts] = DEFAULT_COUNTS, *, honest: bool = True
) -> Handler:
    def handle(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        return node_response(request, counts[node.jurisdiction], honest=honest)

    return handle


def error_code(body: Mapping[str, Any]) -> str:
    assert body.get("errors"), body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


# What must never appear in an error: stack traces, SQL, file paths, library internals.
LEAKS = ("Traceback", "SELECT", 'File "', ".py", "/tmp", "pyjwt", "jwt.exceptions", "PEM")


def assert_clean_error(body: Mapping[str, Any], code: str, *secrets: str) -> None:
    """`body` refuses with `code` only, and carries none of `secrets` nor a known leak."""
    assert error_code(body) == code, body
    assert body.get("data") in (None, {}) or all(v is None for v in body["data"].values())
    text = json.dumps(body)
    for leak in (*LEAKS, *secrets):
        assert leak not in text, (leak, text)


def make_plan(*tables: Breakdown) -> Plan:
    """A plan of the whole federation for the breakdowns `tables`, as the gateway makes it."""
    return plan_query(
        subject=SUBJECT,
        members=MEMBERS,
        request_id=APPROVAL.request_id,
        criteria={},
        jurisdictions=None,
        reference_date=dt.date(2026, 1, 1),
        tables=list(tables),
    )


def answered(
    plan: Plan,
    counts: Mapping[Jurisdiction, Counts] = DEFAULT_COUNTS,
    *,
    honest: bool = True,
    failed: Mapping[Jurisdiction, NodeStatus] | None = None,
) -> list[NodeOutcome]:
    outcomes = []
    for j in plan.jurisdictions:
        if failed and j in failed:
            outcomes.append(NodeOutcome.failed(j, failed[j], "down"))
            continue
        request = plan.node_request(j, APPROVAL)
        response = node_response(request, counts[j], honest=honest)
        outcome = check_response(NodeInfo(j, f"node-{j}", "http://x"), request, response, 1.0)
        assert outcome.status is NodeStatus.OK, outcome
        outcomes.append(outcome)
    return outcomes


def cells(table: Any) -> dict[tuple[str, ...], int | None]:
    return {tuple(d.value for d in c.dimensions): c.count.value for c in table}
