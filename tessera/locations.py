"""Where `tessera demo` leaves what a client needs: its gateway's URL and the researcher's
credentials. Import-light: `tessera --help` reads these defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Final

DEMO_DIRECTORY: Final = Path(".tessera/demo")
DEMO_GATEWAY: Final = "http://127.0.0.1:8400/graphql"
# Beside the credentials: the URL the demo's gateway listens on, so that clients find the demo
# by its directory whatever its port.
GATEWAY_URL_FILE: Final = "gateway.url"
