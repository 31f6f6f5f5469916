"""`tessera permit` and `tessera token`: permits as each HDAB issues them, the wrong ones on
purpose, and identity tokens."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from schema.codes import Jurisdiction
from tessera.cli import main
from tessera.keys import ensure_rotated
from tessera.local import hdab_keys


def minted(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    assert main(list(args)) == 0
    token = capsys.readouterr().out.strip()
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    ensure_rotated(tmp_path, hdab_keys(Jurisdiction.FR))
    ensure_rotated(tmp_path, "identity")
    return tmp_path


def test_a_demo_hdabs_permit(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, claims = minted(capsys, "permit", "--hdab", "FR", "--keys", str(keys))
    assert header["kid"] == "hdab-fr-1"
    assert claims["iss"] == "https://hdab.fr.demo.tessera.eu"
    assert claims["sub"] == "researcher@demo.tessera.eu"
    assert claims["roles"] == ["researcher"]
    approval = claims["approval"]
    assert (approval["request_id"], approval["application_id"]) == (
        "DR-2026-0042-FR",
        "DR-2026-0042",
    )
    assert (approval["jurisdictions"], approval["datasets"]) == (["FR"], ["tessera-node-fr"])
    assert (approval["applicant"], approval["applicant_kind"]) == (
        "Demo University Hospital",
        "public_body",
    )
    # It verifies with the keys FR's HDAB publishes.
    published = jwt.PyJWKSet.from_json((keys / "hdab-fr.jwks.json").read_text())
    assert main(["permit", "--hdab", "FR", "--keys", str(keys)]) == 0
    token = capsys.readouterr().out.strip()
    verified = jwt.decode(
        token, published.keys[0].key, algorithms=["EdDSA"], audience="tessera-gateway"
    )
    assert verified["iss"] == "https://hdab.fr.demo.tessera.eu"


def test_every_field_can_be_set_and_the_wrong_ones_are_flags(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, claims = minted(
        capsys,
        "permit",
        "--key",
        str(keys / "hdab-fr-1.key.pem"),
        "--issuer",
        "https://hdab.example.fr",
        "--jurisdictions",
        "FR,DE",
        "--datasets",
        "",
        "--request",
        "DR-9",
        "--subject",
        "someone-else@test.eu",
        "--organisation",
        "Acme",
        "--applicant-kind",
        "private_entity",
        "--purpose",
        "advertising_marketing",
        "--valid-days",
        "-1",
    )
    approval = claims["approval"]
    assert claims["iss"] == "https://hdab.example.fr"
    assert claims["sub"] == "someone-else@test.eu"
    assert approval["jurisdictions"] == ["FR", "DE"]
    assert approval["datasets"] == []
    assert approval["purpose"] == "advertising_marketing"
    assert approval["application_id"] is None
    until = dt.datetime.fromisoformat(approval["valid_until"].replace("Z", "+00:00"))
    assert until <= dt.datetime.now(dt.UTC)  # an approval that has expired
    _, expired = minted(capsys, "permit", "--hdab", "FR", "--keys", str(keys), "--expired")
    assert expired["exp"] < time.time() - 300  # beyond any leeway
    _, early = minted(capsys, "permit", "--hdab", "FR", "--keys", str(keys), "--not-yet-valid")
    assert early["nbf"] > time.time() + 300


def test_a_permit_needs_its_issuer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["permit", "--hdab", "DK", "--keys", str(tmp_path)]) == 2
    assert "no hdab-dk key" in capsys.readouterr().err
    assert main(["permit", "--key", str(tmp_path / "k.pem")]) == 2
    assert "give --issuer, --request, --jurisdictions" in capsys.readouterr().err


def test_identity_and_compliance_tokens(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = str(keys / "identity-1.key.pem")
    issuer = ("--issuer", "https://healthdata.demo.tessera.eu")
    _, identity = minted(capsys, "token", "--key", key, *issuer, "--identity")
    assert identity["iss"] == "https://healthdata.demo.tessera.eu"
    assert (identity["roles"], "approval" in identity) == (["researcher"], False)
    _, compliance = minted(capsys, "token", "--key", key, *issuer, "--roles", "compliance")
    assert (compliance["roles"], "approval" in compliance) == (["compliance"], False)
    # A shared issuer's token with an approval, as before permits per HDAB.
    _, shared = minted(capsys, "token", "--key", key, "--issuer", "https://hdab.eu.test")
    assert shared["approval"]["jurisdictions"] == ["FR", "DE", "FI", "DK"]
    assert shared["approval"]["datasets"] == ["omop-cdm-5.4"]


def test_a_token_names_its_issuer(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No token silently gets the demo's issuer: outside the demo it would be refused."""
    key = str(keys / "identity-1.key.pem")
    with pytest.raises(SystemExit) as exited:
        main(["token", "--key", key, "--identity"])
    assert exited.value.code == 2
    assert "--issuer" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["token", "permit"])
def test_help_shows_the_defaults(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default: tessera-gateway)" in shown  # --audience
    assert "(default: researcher@demo.tessera.eu)" in shown  # --subject
    assert "(default: 3600)" in shown  # --ttl
