"""`schema/schema.graphql` is the published API: it must match what the gateway serves.
Regenerate with `tessera schema --write schema/schema.graphql`."""

from __future__ import annotations

from pathlib import Path

from gateway.graphql.schema import sdl

SDL_FILE = Path(__file__).resolve().parent.parent / "schema" / "schema.graphql"


def test_exported_sdl_is_in_sync() -> None:
    assert SDL_FILE.read_text() == sdl(), (
        "schema/schema.graphql is stale: run `tessera schema --write schema/schema.graphql`"
    )
