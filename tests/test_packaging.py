"""The wheel a hub installs: built from this tree, it holds every package and data file, and
installed into a fresh virtual environment (the pinned versions of `constraints.txt`) it
runs `tessera demo --smoke` from a directory outside the repository, with the example
questions it ships.

Marked `packaging` (about a minute: a build, a virtual environment, the demo); part of
`make test`, `-m "not packaging"` leaves it out while working on something else."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tessera.processes import free_port_block

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "schema",
    "policies",
    "trust",
    "oversight",
    "serving",
    "gateway",
    "connectors",
    "synth",
    "tessera",
)


def tracked_files() -> list[str]:
    """The repository's files (git's view when there is one, else the tree)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", *PACKAGES],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        files = [f for f in listed.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:
        files = [
            str(p.relative_to(ROOT))
            for pkg in PACKAGES
            for p in (ROOT / pkg).rglob("*")
            if p.is_file()
        ]
    # The examples are linked into the tessera package: the wheel holds them there.
    examples = [f"tessera/examples/{p.name}" for p in sorted((ROOT / "examples").glob("*"))]
    return sorted(
        {f for f in files if "__pycache__" not in f and (ROOT / f).is_file()} | set(examples)
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (found,) = out.glob("tessera-*.whl")
    return found


def test_the_wheel_holds_every_package_and_data_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        inside = set(archive.namelist())
    missing = [f for f in tracked_files() if f not in inside]
    assert missing == []
    assert "tessera/examples/01_diabetes_women_40_69.graphql" in inside
    assert "policies/layers/eu.toml" in inside
    assert "schema/schema.graphql" in inside


def test_the_installed_wheel_runs_the_demo_outside_the_repository(
    wheel: Path, tmp_path: Path
) -> None:
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, clear=True).create(environment)
    python = environment / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # This environment's pip installs into the new one (which needs none of its own); the
    # packages come from pip's cache when it has them; no bytecode is compiled ahead.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    pip.append("--no-compile")
    installed = subprocess.run(
        [*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import tessera, gateway, trust; print(tessera.__file__)"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=60,
        check=True,
    ).stdout
    assert str(environment) in where
    port = str(free_port_block(5))
    demo = subprocess.run(
        [
            str(environment / "bin" / "tessera"),
            "demo",
            "--smoke",
            "--persons",
            "3000",
            "--port",
            port,
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=600,
        check=False,
    )
    out = demo.stdout
    assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
    for example in sorted((ROOT / "examples").glob("*.graphql")):
        assert example.name in out
    assert "error" not in out.lower()
    assert (elsewhere / ".tessera" / "demo" / "researcher.jwt").is_file()
