"""`tessera gateway serve` on a broken federation file, as an operator runs it: one line on
standard error naming the file, the field and what to do, exit status 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from jwt.algorithms import OKPAlgorithm

from tests.gateway.gateway_kit import Keys, pem_public, write_federation

Edit = Callable[[Path, Keys], None]


def replace(old: str, new: str) -> Edit:
    def edit(federation: Path, _: Keys) -> None:
        federation.write_text(federation.read_text().replace(old, new))

    return edit


def jwks_with_private_key(federation: Path, keys: Keys) -> None:
    jwk = json.loads(OKPAlgorithm.to_jwk(keys.hdab))
    (federation.parent / "keys" / "hdab.jwks.json").write_text(json.dumps({"keys": [jwk]}))
    replace('public_key = "keys/hdab.pub.pem"', 'jwks_file = "keys/hdab.jwks.json"')(
        federation, keys
    )


def public_signing_key(federation: Path, keys: Keys) -> None:
    (federation.parent / "keys" / "gateway.key.pem").write_bytes(pem_public(keys.gateway))


CASES: dict[str, tuple[Edit, list[str]]] = {
    "malformed": (
        lambda f, _: f.write_text(f.read_text() + "\n[[nodes\n"),
        ["federation.toml is not valid TOML", "(at line"],
    ),
    "unknown-field": (
        replace('signing_kid = "gateway-1"', 'signing_kid = "gateway-1"\nsigning_kye = "x"'),
        ["federation.toml: gateway.signing_kye: unknown field: remove it or correct its spelling"],
    ),
    "missing-signing-key": (
        lambda f, _: (f.parent / "keys" / "gateway.key.pem").unlink(),
        ["federation.toml: gateway.signing_key: cannot read", "No such file or directory"],
    ),
    "public-signing-key": (
        public_signing_key,
        ["federation.toml: gateway.signing_key:", "is not an unencrypted PKCS8 PEM private key"],
    ),
    "forbidden-algorithm": (
        replace('algorithms = ["EdDSA"]', 'algorithms = ["HS256"]'),
        ["federation.toml: issuers.0.algorithms.0: Input should be 'EdDSA'"],
    ),
    "jwks-with-a-private-key": (
        jwks_with_private_key,
        [
            "federation.toml: issuers.0.jwks_file:",
            "private or symmetric key material (publish public keys only",
        ],
    ),
    "missing-file": (
        lambda f, _: f.unlink(),
        ["cannot read the federation file", "(give it with --federation"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_federation_file_is_one_line_and_exit_2(
    tmp_path: Path, keys: Keys, case: str
) -> None:
    edit, expected = CASES[case]
    federation = write_federation(tmp_path, keys)
    edit(federation, keys)
    command = ["gateway", "serve", "--federation", str(federation), "--port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "tessera", *command, "--audit-db", str(tmp_path / "a.sqlite3")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("tessera gateway serve: ")
    for text in expected:
        assert text in line, line
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_gateway_without_its_policies(tmp_path: Path, keys: Keys) -> None:
    federation = write_federation(tmp_path, keys)
    command = ["gateway", "serve", "--federation", str(federation), "--port", "0"]
    command += ["--policies", str(tmp_path / "none"), "--audit-db", str(tmp_path / "a.sqlite3")]
    done = subprocess.run(
        [sys.executable, "-m", "tessera", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"tessera gateway serve: TESSERA_GATEWAY_POLICIES ({tmp_path / 'none'}): eu.toml: "
        "file not found [MISSING_FILE]\n"
    )
