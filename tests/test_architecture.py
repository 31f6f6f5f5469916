"""The dependency rule: schema ← policies ← {gateway, connectors}, schema ← trust ← serving ←
{gateway, connectors} and schema ← oversight ← {gateway, connectors} (and `tessera`, the
composition root, which may import anything); gateway and connectors only talk over HTTP and
never import each other: what they share is the service shell (`serving`). The synthetic data
generator (`synth`) builds on connectors, never the other way round. `schema` does no I/O: the
audit stores and the trace exporter are `oversight`'s."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {
    "schema",
    "policies",
    "trust",
    "oversight",
    "serving",
    "gateway",
    "connectors",
    "synth",
    "tessera",
}
ALLOWED = {
    "schema": {"schema"},
    "policies": {"schema", "policies"},
    "trust": {"schema", "trust"},
    # The service shell: settings, lifecycle, /readyz, serving; shared by both services.
    "serving": {"schema", "trust", "serving"},
    # The audit trail's stores and writer, the trace exporter: I/O on schema's formats, for
    # whichever service writes them.
    "oversight": {"schema", "oversight"},
    "gateway": {"schema", "policies", "trust", "oversight", "serving", "gateway"},
    # A hub's connector never carries the synthetic data generator: it is not in this set.
    "connectors": {"schema", "policies", "trust", "oversight", "serving", "connectors"},
    # Synthetic CDMs for demos, tests and benchmarks, prepared as a hub prepares its own.
    "synth": {"schema", "connectors", "synth"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & FIRST_PARTY


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_rule_allows(package: str) -> None:
    violations = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {p: v for p, v in violations.items() if v} == {}


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from connectors.app import create_app\nimport gateway.settings\n")
    assert imported_packages(bad) == {"connectors", "gateway"}


# `schema` is contracts and pure code: no database, network or process, and no span exporter
# or tracer provider (the OpenTelemetry API names spans; the SDK that exports them is I/O).
IO_MODULES = {"sqlite3", "asyncpg", "aiohttp", "socket", "subprocess", "requests", "httpx"}
IO_PREFIXES = ("opentelemetry.sdk", "opentelemetry.exporter")


def imported_modules(path: Path, *, names: bool = False) -> set[str]:
    """Every module `path` imports; with `names`, `from a import b` also as `a.b` (b may be a
    module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if names:
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def io_imports(path: Path) -> set[str]:
    modules = imported_modules(path)
    return {m.split(".")[0] for m in modules} & IO_MODULES | {
        m for m in modules if m.startswith(IO_PREFIXES)
    }


def test_schema_does_no_io() -> None:
    doing_io = {
        str(path.relative_to(ROOT)): sorted(io_imports(path))
        for path in (ROOT / "schema").rglob("*.py")
    }
    assert {p: io for p, io in doing_io.items() if io} == {}


def test_the_io_checker_sees_io(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sqlite3\nfrom opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.trace import Span\n"
    )
    assert io_imports(bad) == {"sqlite3", "opentelemetry.sdk.trace"}


# The gateway's pipeline (`gateway.service`) knows nothing of GraphQL, not even through the
# modules it imports: the GraphQL layer translates into it and out of it.
GRAPHQL_FREE = ("gateway.service",)


def is_graphql(module: str) -> bool:
    return module.split(".")[0] in {"strawberry", "graphql"} or (
        module == "gateway.graphql" or module.startswith("gateway.graphql.")
    )


def graphql_imports(module: str) -> list[str]:
    """The GraphQL modules `module` imports, itself or through the first-party modules it
    imports, each as `importer -> imported`."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = _source(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        for imported in imported_modules(path, names=True):
            if is_graphql(imported):
                found.add(f"{name} -> {imported}")
            elif imported.split(".")[0] in FIRST_PARTY:
                todo.append(imported)
    return sorted(found)


def _source(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@pytest.mark.parametrize("module", GRAPHQL_FREE)
def test_the_gateway_pipeline_does_not_import_graphql(module: str) -> None:
    assert graphql_imports(module) == []


def test_the_graphql_checker_sees_imports_through_other_modules() -> None:
    # gateway.cli imports GraphQL only through gateway.app, which builds the GraphQL view.
    found = graphql_imports("gateway.cli")
    assert "gateway.app -> strawberry.aiohttp.views" in found
    assert not any(f.startswith("gateway.cli ->") for f in found)
    assert not is_graphql("gateway.graphs")
    assert is_graphql("graphql.language")
