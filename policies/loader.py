"""Reading policy files: TOML, validated by the layer models.

Every problem is reported with its file, line and key path, so that whoever maintains a
policy file can find and fix it: `fr.toml:12: disclosure.min_count.value: Input should be
greater than or equal to 1 [INVALID_VALUE]`. tomllib reports syntax errors with a line but
parsed values without positions, so validation errors are located by scanning the file's text
for the table headers and keys along the error's path.

This is the only module of the package that parses files (`policies.live` only hashes their
bytes, to see when they change).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from policies.model import BaselineLayer, JurisdictionLayer, NodeLayer
from policies.policy_set import PolicySet
from policies.profiles import DisclosureProfile
from schema.codes import Jurisdiction

DEFAULT_DIRECTORY: Final = Path(__file__).parent / "layers"
BASELINE_FILE: Final = "eu.toml"
JURISDICTIONS_DIR: Final = "jurisdictions"

M = TypeVar("M", bound=BaseModel)


class PolicyErrorCode(StrEnum):
    MISSING_FILE = "MISSING_FILE"
    UNREADABLE = "UNREADABLE"
    SYNTAX = "SYNTAX"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    MISSING_KEY = "MISSING_KEY"
    INVALID_VALUE = "INVALID_VALUE"
    FILENAME_MISMATCH = "FILENAME_MISMATCH"


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in one policy file. `line` is 1-based; None when the problem concerns the
    file as a whole (a missing file, a key missing at the top level)."""

    file: str
    line: int | None
    key: str
    code: PolicyErrorCode
    problem: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.problem} [{self.code.value}]"


class PolicyFileError(Exception):
    """One or more problems in policy files. The first issue's fields are also attributes,
    for the common single-problem case."""

    def __init__(self, issues: Sequence[PolicyIssue]) -> None:
        if not issues:
            raise ValueError("a PolicyFileError needs at least one issue")
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @property
    def file(self) -> str:
        return self.issues[0].file

    @property
    def line(self) -> int | None:
        return self.issues[0].line

    @property
    def key(self) -> str:
        return self.issues[0].key

    @property
    def code(self) -> PolicyErrorCode:
        return self.issues[0].code

    @property
    def problem(self) -> str:
        return self.issues[0].problem


# -- locating keys in TOML text --------------------------------------------------------------
_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_KEY_VALUE = re.compile(rf"^\s*({_DOTTED})\s*=")
_KEY_PART = re.compile(_KEY)

Loc = tuple[str | int, ...]


def _split_dotted(dotted: str) -> tuple[str, ...]:
    parts = []
    for match in _KEY_PART.finditer(dotted):
        part = match.group(0)
        if part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def _code_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines that can hold a header or a key: not inside a multi-line string."""
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        yield number, line
        for quote in ('"""', "'''"):
            if line.count(quote) % 2 == 1:
                in_string = quote
                break


def key_lines(text: str) -> dict[Loc, int]:
    """The line on which each table and key of a TOML document is defined, by path; array
    of tables elements carry their index, as in pydantic error locations."""
    lines: dict[Loc, int] = {}
    arrays: dict[Loc, int] = {}  # path of an array of tables -> elements seen so far
    table: Loc = ()

    def resolve(parts: tuple[str, ...]) -> Loc:
        # A header below an array of tables (`[issuers.x]` after `[[issuers]]`) refers to
        # the array's latest element.
        path: Loc = ()
        for part in parts:
            path = (*path, part)
            if path in arrays:
                path = (*path, arrays[path] - 1)
        return path

    for number, line in _code_lines(text):
        if match := _ARRAY_HEADER.match(line):
            parts = _split_dotted(match.group(1))
            parent = resolve(parts[:-1])
            array: Loc = (*parent, parts[-1])
            arrays[array] = arrays.get(array, 0) + 1
            lines.setdefault(array, number)
            table = (*array, arrays[array] - 1)
            lines[table] = number
        elif match := _TABLE_HEADER.match(line):
            table = resolve(_split_dotted(match.group(1)))
            lines.setdefault(table, number)
        elif match := _KEY_VALUE.match(line):
            path = table
            for part in _split_dotted(match.group(1)):
                path = (*path, part)
                lines.setdefault(path, number)
    return lines


def locate(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of the longest prefix of `loc` defined in the file: the key itself when it is
    there, else the table it belongs in (for a missing key) or the key holding it (for an
    element of an array or inline table)."""
    for end in range(len(loc), 0, -1):
        if (line := lines.get(loc[:end])) is not None:
            return line
    return None


def dotted_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# -- reading ---------------------------------------------------------------------------------
_SYNTAX_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_ERROR_CODES: Final = {
    "extra_forbidden": PolicyErrorCode.UNKNOWN_KEY,
    "missing": PolicyErrorCode.MISSING_KEY,
}


def _display(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def read_toml(path: Path, *, root: Path | None = None) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; return the data and the text (for locating keys)."""
    name = _display(path, root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyFileError(
            [PolicyIssue(name, None, "", PolicyErrorCode.MISSING_FILE, "file not found")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read the file ({type(exc).__name__})"
        raise PolicyFileError(
            [PolicyIssue(name, None, "", PolicyErrorCode.UNREADABLE, problem)]
        ) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line: int | None = getattr(exc, "lineno", None)
        if (match := _SYNTAX_POSITION.search(message)) is not None:
            line = line or int(match.group(1))
            message = message[: match.start()]
        raise PolicyFileError(
            [PolicyIssue(name, line, "", PolicyErrorCode.SYNTAX, message)]
        ) from None


def _issues(error: ValidationError, name: str, text: str) -> list[PolicyIssue]:
    lines = key_lines(text)
    issues = []
    for detail in error.errors(include_url=False):
        loc: Loc = tuple(detail["loc"])
        code = _ERROR_CODES.get(detail["type"], PolicyErrorCode.INVALID_VALUE)
        problem = str(detail["msg"]).removeprefix("Value error, ")
        if code is PolicyErrorCode.UNKNOWN_KEY:
            problem = f"unknown key {loc[-1]!s}" if loc else "unknown key"
        elif code is PolicyErrorCode.MISSING_KEY:
            problem = "required key is missing"
        elif isinstance(detail.get("input"), str | int | float | bool) and loc:
            problem = f"{problem} (got {detail['input']!r})"
        issues.append(PolicyIssue(name, locate(lines, loc), dotted_loc(loc), code, problem))
    return issues


def load_model(path: Path, model: type[M], *, root: Path | None = None) -> M:
    """Read and validate one policy file as `model`."""
    data, text = read_toml(path, root=root)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError(_issues(exc, _display(path, root), text)) from None


def load_baseline(path: Path, *, root: Path | None = None) -> BaselineLayer:
    return load_model(path, BaselineLayer, root=root)


def load_jurisdiction(path: Path, *, root: Path | None = None) -> JurisdictionLayer:
    """A national layer; its file must be named after its jurisdiction (`fr.toml` for FR),
    so a copied file cannot silently replace another country's rules."""
    layer = load_model(path, JurisdictionLayer, root=root)
    if path.stem.upper() != layer.jurisdiction.value:
        _, text = read_toml(path, root=root)
        raise PolicyFileError(
            [
                PolicyIssue(
                    _display(path, root),
                    locate(key_lines(text), ("jurisdiction",)),
                    "jurisdiction",
                    PolicyErrorCode.FILENAME_MISMATCH,
                    f"file for {layer.jurisdiction.value} must be named "
                    f"{layer.jurisdiction.value.lower()}.toml",
                )
            ]
        )
    return layer


def load_node_layer(path: Path) -> NodeLayer:
    """A hub's node layer, kept next to its connector."""
    return load_model(path, NodeLayer)


def jurisdiction_files(directory: Path) -> list[Path]:
    return sorted((directory / JURISDICTIONS_DIR).glob("*.toml"))


def policy_files(directory: Path | None = None) -> list[Path]:
    """The files `load_policy_set` reads from a directory, as they are now: what a service
    watches to reload its policy."""
    root = DEFAULT_DIRECTORY if directory is None else directory
    return [root / BASELINE_FILE, *jurisdiction_files(root)]


def load_policy_set(directory: Path | None = None) -> PolicySet:
    """The baseline and every national layer of a policy directory (by default the one
    shipped with this package). All files are read; every problem found is reported at once."""
    root = DEFAULT_DIRECTORY if directory is None else directory
    issues: list[PolicyIssue] = []
    baseline: BaselineLayer | None = None
    try:
        baseline = load_baseline(root / BASELINE_FILE, root=root)
    except PolicyFileError as exc:
        issues.extend(exc.issues)
    layers: dict[Jurisdiction, JurisdictionLayer] = {}
    for path in jurisdiction_files(root):
        try:
            layer = load_jurisdiction(path, root=root)
        except PolicyFileError as exc:
            issues.extend(exc.issues)
        else:
            layers[layer.jurisdiction] = layer
    if issues:
        raise PolicyFileError(issues)
    assert baseline is not None  # no issues means the baseline loaded
    return PolicySet(baseline=baseline, jurisdictions=layers)


@cache
def shipped_policy_set() -> PolicySet:
    """The policy files shipped with this package, read once per process."""
    return load_policy_set()


def shipped_disclosure_profile(jurisdiction: Jurisdiction) -> DisclosureProfile:
    """The disclosure profile of the shipped policies for a jurisdiction; for one without a
    policy file, the strict baseline profile (fail closed)."""
    return shipped_policy_set().profile(jurisdiction)
