"""`tessera demo --smoke`: the newcomer's command, end to end, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tessera.processes import free_port_block

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_demo_smoke_answers_the_examples(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera",
            "demo",
            "--smoke",
            "--persons",
            "5000",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            str(free_port_block(5)),
            "--examples",
            str(ROOT / "examples"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout
    assert "Tessera demo federation is up" in out
    assert "curl" in out
    assert "/console  (open it in a browser" in out
    for example in ROOT.glob("examples/*.graphql"):
        assert example.name in out
    assert "asked by Coronado study" in out
    assert "survival, pooled: FEMALE" in out
    assert "log-rank by SEX (pooled)" in out
    assert "error" not in out.lower()
    assert (tmp_path / "demo" / "researcher.jwt").is_file()
