"""What the real gateway and connector processes answer to requests aiohttp's own HTTP parser
refuses before any handler runs (a header or request line over its limit, bytes that are not
HTTP): JSON with a stable code, nothing of the request echoed, nothing of it in the log."""

from __future__ import annotations

import json
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from schema.codes import Jurisdiction
from schema.wire import QUERY_PATH
from tessera.local import LocalFederation

pytestmark = pytest.mark.integration


def raw_request(url: str, data: bytes) -> tuple[int, str, bytes]:
    """Send `data` as is on a fresh connection; the status, content type and body of the
    answer (the server closes the connection after such a refusal)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(data)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


def token_of(size: int) -> str:
    """A bearer token of `size` characters, shaped like a JWT, with a prefix of its own."""
    prefix = f"eyJ{secrets.token_hex(12)}"
    return prefix + "A" * (size - len(prefix))


def oversized_header(path: str, token: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()


def log_of(federation: LocalFederation, pattern: str) -> str:
    (path,) = federation.logs_dir.glob(pattern)
    return Path(path).read_text(errors="replace")


def gateway_error(body: bytes) -> tuple[str, str]:
    error: dict[str, Any] = json.loads(body)["errors"][0]
    return error["extensions"]["code"], error["message"]


def test_an_oversized_token_at_the_gateway(federation: LocalFederation) -> None:
    token = token_of(9 * 1024)
    status, kind, body = raw_request(federation.gateway_url, oversized_header("/graphql", token))
    assert (status, kind) == (431, "application/json")
    assert gateway_error(body) == (
        "HEADER_TOO_LARGE",
        "the request line or a header field is too long (at most 8190 bytes each)",
    )
    assert token[:12].encode() not in body
    log = log_of(federation, "gateway.log")
    assert "refused a request aiohttp could not parse (LineTooLong): HEADER_TOO_LARGE" in log
    assert token[:12] not in log
    assert "Traceback" not in log


def test_an_oversized_request_line_and_bytes_that_are_not_http(
    federation: LocalFederation,
) -> None:
    secret = secrets.token_hex(16)
    line = f"GET /graphql?q={secret}{'x' * 9000} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    status, kind, body = raw_request(federation.gateway_url, line)
    assert (status, kind, gateway_error(body)[0]) == (431, "application/json", "HEADER_TOO_LARGE")
    garbage = f"POST /graphql HTTP/1.1\r\nHost: localhost\r\nX-{secret}\x01: y\r\n\r\n".encode()
    status, kind, body = raw_request(federation.gateway_url, garbage)
    assert (status, kind) == (400, "application/json")
    assert gateway_error(body) == ("BAD_REQUEST", "the request is not well-formed HTTP")
    assert secret.encode() not in body
    assert secret not in log_of(federation, "gateway.log")


def test_an_oversized_token_at_a_connector(federation: LocalFederation) -> None:
    token = token_of(int(8.8 * 1024))
    url = federation.node_url(Jurisdiction.FR)
    status, kind, body = raw_request(url, oversized_header(QUERY_PATH, token))
    assert (status, kind) == (431, "application/json")
    assert json.loads(body)["code"] == "HEADER_TOO_LARGE"
    assert token[:12].encode() not in body
    log = log_of(federation, "connector-fr-*.log")
    assert "(LineTooLong): HEADER_TOO_LARGE" in log
    assert token[:12] not in log
    assert "Traceback" not in log


def test_operation_names_are_not_echoed(federation: LocalFederation) -> None:
    for name in ("<script>alert(1)</script>", "N" * 5000):
        payload = json.dumps({"query": "query A { __typename }", "operationName": name})
        request = (
            "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(payload)}\r\n\r\n{payload}"
        ).encode()
        status, kind, body = raw_request(federation.gateway_url, request)
        assert (status, kind) == (400, "application/json")
        assert gateway_error(body)[0] == "GRAPHQL_VALIDATION_FAILED"
        assert b"script" not in body
        assert b"NNNN" not in body


def test_a_body_that_does_not_decompress(federation: LocalFederation) -> None:
    secret = secrets.token_hex(8)
    for url, path, log in [
        (federation.gateway_url, "/graphql", "gateway.log"),
        (federation.node_url(Jurisdiction.FR), QUERY_PATH, "connector-fr-*.log"),
    ]:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(secret)}\r\n\r\n{secret}"
        ).encode()
        status, kind, body = raw_request(url, request)
        assert (status, kind) == (400, "application/json")
        text = body.decode()
        assert "BAD_REQUEST" in text
        assert "the request body is not well-formed (its length or encoding)" in text
        written = log_of(federation, log)
        assert "refused a request body aiohttp could not read (RequestPayloadError)" in written
        assert "Traceback" not in written
        assert secret not in written
