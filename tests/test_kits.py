"""Test helpers are imported one way: by their place under `tests/` (`from
tests.gateway.gateway_kit import ...`), from a helper module, never from a conftest or another
test module.

A bare `from gateway_kit import ...` works too, only because pytest's default import mode puts
each test's directory on sys.path; a module imported both ways is two modules, each with its
own keys (`HDAB_KEY = Ed25519PrivateKey.generate()`), and tokens of one fail against the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def helper_modules(tests: Path) -> set[str]:
    """The names of the helper modules under `tests` (neither a test module nor a conftest)."""
    return {
        path.stem
        for path in tests.rglob("*.py")
        if not path.name.startswith("test_") and path.name != "conftest.py"
    }


def wrong_imports(path: Path, helpers: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            bare = parts[0] in helpers or parts[0] == "conftest"
            from_tests = parts[0] == "tests" and (
                parts[-1] == "conftest" or parts[-1].startswith("test_")
            )
            if bare or from_tests:
                wrong.append(module)
    return wrong


def test_helpers_are_imported_by_their_place_under_tests() -> None:
    helpers = helper_modules(TESTS)
    found = {
        str(path.relative_to(TESTS)): wrong
        for path in sorted(TESTS.rglob("*.py"))
        if (wrong := wrong_imports(path, helpers))
    }
    assert found == {}


def test_the_checker_sees_each_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text(
        "from gateway_kit import mint\n"
        "import conftest\n"
        "from tests.integration.conftest import post\n"
        "from tests.gateway.test_gateway_combine import cells\n"
        "from tests.gateway.gateway_kit import mint\n"
    )
    assert wrong_imports(module, {"gateway_kit"}) == [
        "gateway_kit",
        "conftest",
        "tests.integration.conftest",
        "tests.gateway.test_gateway_combine",
    ]
