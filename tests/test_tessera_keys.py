"""`tessera keys`: generate, rotate, publish as JWKS; a rotation reaches a running verifier."""

from __future__ import annotations

import json
import stat
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from schema.errors import ErrorCode
from schema.wire import REQUEST_TOKEN_TYP, body_hash
from tessera.cli import main
from trust.keys import parse_jwks
from trust.keysource import RefreshingKeys, file_fetch
from trust.request_token import ALGORITHM, RequestRefused, RequestVerifier


def test_rotate_numbers_generations_and_keeps_the_newest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        assert main(["keys", "rotate", "gateway", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "new key gateway-3" in out
    assert "now trusts: gateway-3, gateway-2" in out
    document = (tmp_path / "gateway.jwks.json").read_text()
    assert [k["kid"] for k in json.loads(document)["keys"]] == ["gateway-3", "gateway-2"]
    assert parse_jwks(document, ("EdDSA",)).kids == ("gateway-3", "gateway-2")
    private = tmp_path / "gateway-3.key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert '"d"' not in document  # only public halves are published


def test_rotate_can_keep_more_keys(tmp_path: Path) -> None:
    for _ in range(3):
        main(["keys", "rotate", "hdab", "--dir", str(tmp_path), "--keep", "3"])
    kids = [k["kid"] for k in json.loads((tmp_path / "hdab.jwks.json").read_text())["keys"]]
    assert kids == ["hdab-3", "hdab-2", "hdab-1"]


def test_jwks_of_named_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["keys", "generate", "a", "--dir", str(tmp_path)])
    main(["keys", "generate", "b", "--dir", str(tmp_path)])
    capsys.readouterr()
    main(["keys", "jwks", "b", "a", "--dir", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out)
    assert [k["kid"] for k in printed["keys"]] == ["b", "a"]
    out = tmp_path / "published" / "keys.json"
    main(["keys", "jwks", "a", "--dir", str(tmp_path), "--out", str(out)])
    assert parse_jwks(out.read_text(), ("EdDSA",)).kids == ("a",)


def _signed(body: bytes, private: Path, kid: str) -> str:
    key = load_pem_private_key(private.read_bytes(), password=None)
    now = int(time.time())
    claims = {
        "iss": "tessera-gateway",
        "aud": "tessera-node-fr",
        "iat": now,
        "exp": now + 30,
        "jti": uuid.uuid4().hex,
        "bsh": body_hash(body),
    }
    headers = {"kid": kid, "typ": REQUEST_TOKEN_TYP}
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers=headers)  # type: ignore[arg-type]


async def test_a_node_reading_the_jwks_follows_a_rotation_without_restart(tmp_path: Path) -> None:
    main(["keys", "rotate", "gateway", "--dir", str(tmp_path)])
    keys = RefreshingKeys(
        file_fetch(tmp_path / "gateway.jwks.json"), (ALGORITHM,), name="gateway keys"
    )
    await keys.refresh()
    verifier = RequestVerifier(keys=keys, issuer="tessera-gateway", audience="tessera-node-fr")
    body = b"{}"
    first = _signed(body, tmp_path / "gateway-1.key.pem", "gateway-1")
    await verifier.verify(f"Bearer {first}", body)
    main(["keys", "rotate", "gateway", "--dir", str(tmp_path)])
    await keys.refresh()  # what the node's background task does every minute
    for kid in ("gateway-2", "gateway-1"):  # both valid while tokens of the old key live
        token = _signed(body, tmp_path / f"{kid}.key.pem", kid)
        await verifier.verify(f"Bearer {token}", body)
    main(["keys", "rotate", "gateway", "--dir", str(tmp_path)])
    await keys.refresh()
    token = _signed(body, tmp_path / "gateway-1.key.pem", "gateway-1")
    with pytest.raises(RequestRefused) as retired:
        await verifier.verify(f"Bearer {token}", body)
    assert retired.value.code is ErrorCode.UNKNOWN_KEY
