"""What signing a question's node requests costs the gateway, and verifying them a node:
`python -m bench.request_tokens --nodes 5 30`.

Side by side in one process, in alternating blocks (so that the shared machine's load weighs
on each alike), per question of N nodes:
- `pyjwt per node`: one token per node as pyjwt encodes it (how the gateway signed until the
  question token: `jwt.encode`, a uuid, the body's SHA-256);
- `compact per node`: the same token, encoded as compact JWS directly (`RequestSigner.sign`);
- `question`: one question token for all N (`RequestSigner.sign_question`: N salts and HMACs,
  one signature);
and per node request, what the node's `RequestVerifier.verify` costs for either token.
Bodies are real cohort requests, one per node, as the planner makes them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schema.wire import BODY_HASH_CLAIM, REQUEST_TOKEN_TYP, body_hash
from trust.request_token import ALGORITHM, LIFETIME_S, RequestSigner, RequestVerifier

ISSUER: Final = "tessera-gateway"
KID: Final = "gateway-1"
BLOCKS: Final = 15


def pyjwt_sign(key: Ed25519PrivateKey, body: bytes, audience: str) -> str:
    """The per-node token as the gateway encoded it with pyjwt."""
    issued = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": audience,
        "iat": issued,
        "exp": issued + LIFETIME_S,
        "jti": uuid.uuid4().hex,
        BODY_HASH_CLAIM: body_hash(body),
    }
    return jwt.encode(
        claims, key, algorithm=ALGORITHM, headers={"kid": KID, "typ": REQUEST_TOKEN_TYP}
    )


def bodies_of(nodes: int) -> dict[str, bytes]:
    # A cohort request is ~1 KiB of JSON; what differs per node is its permit's ids.
    base = os.urandom(512).hex().encode()
    return {f"tessera-node-{i:02d}": base + f"DR-2026-0042-{i:02d}".encode() for i in range(nodes)}


def per_question_us(run: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        run()
    return (time.perf_counter() - started) / rounds * 1e6


async def verify_us(
    key: Ed25519PrivateKey, bodies: dict[str, bytes], question: bool, rounds: int
) -> float:
    """Microseconds per node request verified, each node with its own verifier."""
    signer = RequestSigner(issuer=ISSUER, kid=KID, key=key)
    verifiers = {
        node: RequestVerifier(keys={KID: key.public_key()}, issuer=ISSUER, audience=node)
        for node in bodies
    }
    made: list[list[tuple[str, str, str | None]]] = []
    for _ in range(rounds):
        if question:
            credentials = signer.sign_question(bodies)
            made.append([(n, c.authorization, c.salt) for n, c in credentials.items()])
        else:
            made.append(
                [(n, f"Bearer {signer.sign(b, audience=n)}", None) for n, b in bodies.items()]
            )
    started = time.perf_counter()
    for requests in made:
        for node, authorization, salt in requests:
            await verifiers[node].verify(authorization, bodies[node], salt=salt)
    return (time.perf_counter() - started) / (rounds * len(bodies)) * 1e6


def signings(
    key: Ed25519PrivateKey, signer: RequestSigner, bodies: dict[str, bytes]
) -> dict[str, Callable[[], object]]:
    return {
        "pyjwt per node": lambda: [pyjwt_sign(key, b, a) for a, b in bodies.items()],
        "compact per node": lambda: [signer.sign(b, audience=a) for a, b in bodies.items()],
        "question": lambda: signer.sign_question(bodies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[5, 30])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--blocks", type=int, default=BLOCKS)
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    signer = RequestSigner(issuer=ISSUER, kid=KID, key=key)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.blocks} alternating blocks")
    for n in args.nodes:
        bodies = bodies_of(n)
        ways = signings(key, signer, bodies)
        times: dict[str, list[float]] = {name: [] for name in ways}
        checks: dict[str, list[float]] = {"per node": [], "question": []}
        for _ in range(args.blocks):
            for name, run in ways.items():
                times[name].append(per_question_us(run, args.rounds))
            for name in checks:
                checks[name].append(
                    asyncio.run(verify_us(key, bodies, name == "question", args.rounds // 4))
                )
        today = min(times["pyjwt per node"])
        print(f"\n{n} nodes: gateway signing per question, µs (min / median)")
        for name, values in times.items():
            print(
                f"  {name:18} {min(values):8.1f} / {statistics.median(values):8.1f}"
                f"   ×{min(values) / today:.2f} of pyjwt per node"
            )
        print(f"{n} nodes: node verifying per request, µs (min / median)")
        for name, values in checks.items():
            print(f"  {name:18} {min(values):8.1f} / {statistics.median(values):8.1f}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
