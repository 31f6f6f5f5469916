"""A configuration a command cannot run with, as an operator meets it: one line on standard
error naming the file or variable and what to do, exit status 2, never a traceback. The
mapping is in one place (`tessera.cli.main`); the gateway's own cases are in
tests/gateway/test_gateway_start_errors.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def tessera(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str], command: str) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"tessera {command}: "), line
    return line


@pytest.fixture
def public_pem(tmp_path: Path) -> Path:
    path = tmp_path / "audit.pub.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def connector(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return tessera(
        *("connector", "serve", "--jurisdiction", "FR", "--port", "0"),
        *("--database", tmp_path / "cdm.duckdb", *args),
    )


def test_a_connector_with_a_missing_or_public_audit_key(tmp_path: Path, public_pem: Path) -> None:
    missing = tmp_path / "nope.key.pem"
    line = one_line(connector(tmp_path, "--audit-key", missing), "connector serve")
    assert line == (
        f"tessera connector serve: TESSERA_CONNECTOR_AUDIT_KEY: cannot read {missing}: "
        "No such file or directory (correct the path)"
    )
    line = one_line(connector(tmp_path, "--audit-key", public_pem), "connector serve")
    assert f"TESSERA_CONNECTOR_AUDIT_KEY: {public_pem} is not an unencrypted PKCS8" in line


def test_a_connector_with_broken_pooling_keys_or_policies(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    pooled = connector(tmp_path, "--pool-key", missing, "--pool-peers", tmp_path / "peers.json")
    line = one_line(pooled, "connector serve")
    assert line == (
        f"tessera connector serve: TESSERA_CONNECTOR_POOL_KEY: cannot read {missing}: "
        "No such file or directory (correct the path)"
    )
    line = one_line(connector(tmp_path, "--policies", tmp_path / "none"), "connector serve")
    assert line == (
        f"tessera connector serve: TESSERA_CONNECTOR_POLICIES ({tmp_path / 'none'}): eu.toml: "
        "file not found [MISSING_FILE]"
    )


def test_commands_with_a_missing_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key.pem"
    line = one_line(tessera("permit", "--hdab", "FR", "--key", missing), "permit")
    unreadable = f"the signing key: cannot read {missing}: No such file or directory"
    assert line == f"tessera permit: {unreadable} (correct the path)"
    line = one_line(
        tessera("token", "--identity", "--issuer", "https://id.example", "--key", missing), "token"
    )
    assert line == f"tessera token: {unreadable} (correct the path)"
    line = one_line(tessera("keys", "jwks", "nope", "--dir", tmp_path), "keys jwks")
    assert line == f"tessera keys jwks: {tmp_path / 'nope.pub.pem'}: No such file or directory"


def test_a_gateway_setting_out_of_range(tmp_path: Path) -> None:
    done = tessera("gateway", "serve", "--federation", tmp_path / "f.toml", "--port", "99999")
    assert one_line(done, "gateway serve") == (
        "tessera gateway serve: TESSERA_GATEWAY_PORT must lie between 0 and 65535"
    )


def test_help_whose_reader_has_gone_ends_quietly() -> None:
    # `tessera connector serve --help | head -0`: the pipe's reader is gone before the help is
    # written, so every write fails with EPIPE.
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tessera", "connector", "serve", "--help"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 141
