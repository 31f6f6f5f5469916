"""The benchmark's policy directory: the shipped layers, with a layer for every jurisdiction the
benchmark needs and rate limits raised so that a load test measures the gateway, not the
limiter. Never a deployment's policies: it is written under the benchmark's own directory
and handed to the gateway with `TESSERA_GATEWAY_POLICIES`.

A jurisdiction without a shipped file gets a copy of `TEMPLATE`'s with its own code and name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from policies.loader import BASELINE_FILE, DEFAULT_DIRECTORY, JURISDICTIONS_DIR, load_policy_set
from schema.codes import Jurisdiction

TEMPLATE: Final = Jurisdiction.DK
RATE_LIMIT: Final = 1_000_000
_RATE_VALUE: Final = re.compile(r"(\[rate_limits\.[a-z_]+\]\s*\nvalue\s*=\s*)\d+")
_NAME: Final = re.compile(r'^name = ".*"$', re.MULTILINE)
_CODE: Final = re.compile(r'^jurisdiction = ".*"$', re.MULTILINE)


def unlimited(text: str) -> str:
    return _RATE_VALUE.sub(rf"\g<1>{RATE_LIMIT}", text)


def write_policies(directory: Path, jurisdictions: Iterable[Jurisdiction]) -> Path:
    """Write the policy directory and check that it loads; returns `directory`."""
    (directory / JURISDICTIONS_DIR).mkdir(parents=True, exist_ok=True)
    baseline = (DEFAULT_DIRECTORY / BASELINE_FILE).read_text(encoding="utf-8")
    if not _RATE_VALUE.search(baseline):
        raise RuntimeError(f"no rate limit found to raise in {BASELINE_FILE}")
    (directory / BASELINE_FILE).write_text(unlimited(baseline), encoding="utf-8")
    shipped = DEFAULT_DIRECTORY / JURISDICTIONS_DIR
    template = (shipped / f"{TEMPLATE.value.lower()}.toml").read_text(encoding="utf-8")
    for jurisdiction in jurisdictions:
        source = shipped / f"{jurisdiction.value.lower()}.toml"
        if source.exists():
            text = source.read_text(encoding="utf-8")
        else:
            text = _CODE.sub(f'jurisdiction = "{jurisdiction.value}"', template, count=1)
            text = _NAME.sub(
                f'name = "{jurisdiction.value} (benchmark copy of the {TEMPLATE.value} layer)"',
                text,
                count=1,
            )
        target = directory / JURISDICTIONS_DIR / f"{jurisdiction.value.lower()}.toml"
        target.write_text(unlimited(text), encoding="utf-8")
    load_policy_set(directory)  # fails here, with file and line, if a layer is invalid
    return directory
