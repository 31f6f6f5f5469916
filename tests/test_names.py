"""One name, one concept: no two production modules define a public class or function of the
same name, so that an import says which concept it brings in without an alias.

Two kinds of sharing are not collisions:

- a GraphQL type (a class decorated with `strawberry.type`, `input`, `enum` or `interface`)
  is named as the public schema names it (`schema/schema.graphql`, checked by
  `tests/test_sdl.py`), and presents the contract or result of the same name;
- the names in `SHARED`, each one role that several modules play side by side, found through
  its module (`gateway.app.create_app`, `connectors.app.create_app`).
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parent.parent
# The packages the wheel ships: pyproject's package list.
SHIPPED: Final = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PRODUCTION: Final = tuple(p.removesuffix("*") for p in SHIPPED["packages"]["find"]["include"])
GRAPHQL_DECORATORS: Final = frozenset({"type", "input", "enum", "interface"})

# name -> (the modules that share it, why it is one concept there)
SHARED: Final[dict[str, tuple[frozenset[str], str]]] = {
    "register": (
        frozenset(
            {
                "connectors/cli.py",
                "gateway/cli.py",
                "synth/cli.py",
                "tessera/audit_command.py",
                "tessera/cohort_command.py",
                "tessera/commands.py",
                "tessera/federation_command.py",
                "tessera/permit_command.py",
                "tessera/query_command.py",
            }
        ),
        "each package's `register(sub)` adds its subcommands to `tessera` (tessera/cli.py)",
    ),
    "create_app": (
        frozenset({"gateway/app.py", "connectors/app.py"}),
        "each service's application factory, one per service",
    ),
    "serve": (
        frozenset({"gateway/app.py", "connectors/app.py"}),
        "each service's process entry point, one per service",
    ),
    "Reason": (
        frozenset({"schema/result.py", "tessera/client/answer.py"}),
        "the researchers' client reads the API's reasons into its own plain class, so that it "
        "depends on nothing of the services",
    ),
}


def _is_graphql_type(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "strawberry"
            and target.attr in GRAPHQL_DECORATORS
        ):
            return True
    return False


def public_definitions(path: Path) -> set[str]:
    """The public classes and functions a module defines at its top level, GraphQL types
    left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and _is_graphql_type(node):
            continue
        if isinstance(
            node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        ) and not node.name.startswith("_"):
            names.add(node.name)
    return names


def definitions(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Each public name and the modules that define it."""
    where: dict[str, set[str]] = defaultdict(set)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for name in public_definitions(path):
                where[name].add(path.relative_to(root).as_posix())
    return where


def collisions(where: dict[str, set[str]]) -> dict[str, list[str]]:
    return {
        name: sorted(modules)
        for name, modules in where.items()
        if len(modules) > 1 and not (name in SHARED and modules <= SHARED[name][0])
    }


def test_no_two_production_modules_define_the_same_public_name() -> None:
    assert collisions(definitions(ROOT, PRODUCTION)) == {}


def test_every_shared_name_is_still_shared() -> None:
    """An entry of `SHARED` goes when its sharing does."""
    where = definitions(ROOT, PRODUCTION)
    assert {name: sorted(where[name]) for name in SHARED} == {
        name: sorted(modules) for name, (modules, _) in SHARED.items()
    }


def test_the_checker_sees_a_collision(tmp_path: Path) -> None:
    for package, source in (
        ("one", "class Decision:\n    pass\n\n\ndef _private() -> None: ...\n"),
        (
            "two",
            "import strawberry\n\n\n@strawberry.type\nclass Cell:\n    n: int\n\n\n"
            "async def Decision() -> None: ...\n",
        ),
        ("three", "@strawberry.type(description='x')\nclass Cell:\n    n: int\n"),
    ):
        (tmp_path / package).mkdir()
        (tmp_path / package / "module.py").write_text(source)
    found = collisions(definitions(tmp_path, ("one", "two", "three")))
    assert found == {"Decision": ["one/module.py", "two/module.py"]}
