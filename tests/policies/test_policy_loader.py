"""Loading policy files: every problem comes back with its file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.loader import (
    DEFAULT_DIRECTORY,
    PolicyErrorCode,
    PolicyFileError,
    PolicyIssue,
    key_lines,
    load_baseline,
    load_jurisdiction,
    load_node_layer,
    load_policy_set,
    locate,
)
from policies.model import JurisdictionLayer
from schema.codes import Jurisdiction
from tests.policies.policy_kit import copy_shipped

FR_MINIMAL = """\
name = "France"
jurisdiction = "FR"

[hdab]
name = "Health Data Hub"
source = "test"

[disclosure.min_count]
value = 11
source = "Health Data Hub / CASD"
verified = true

[disclosure.noise]
value = { sigma = 6.0 }
source = "test"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in text")


def error_of(path: Path, *, root: Path | None = None) -> PolicyFileError:
    with pytest.raises(PolicyFileError) as caught:
        load_jurisdiction(path, root=root)
    return caught.value


# -- the shipped directory ------------------------------------------------------------------
def test_the_default_directory_is_the_package_directory() -> None:
    assert Path(__file__).resolve().parents[2] / "policies" / "layers" == DEFAULT_DIRECTORY
    assert load_policy_set() == load_policy_set(DEFAULT_DIRECTORY)


def test_a_minimal_jurisdiction_file_loads(tmp_path: Path) -> None:
    layer = load_jurisdiction(write(tmp_path, "fr.toml", FR_MINIMAL))
    assert isinstance(layer, JurisdictionLayer)
    assert layer.jurisdiction is Jurisdiction.FR
    assert layer.disclosure.min_count is not None
    assert layer.disclosure.min_count.value == 11
    assert layer.dimensions.allowed is None  # unstated: the baseline applies


# -- unknown keys ---------------------------------------------------------------------------
def test_an_unknown_key_is_reported_with_file_and_line(tmp_path: Path) -> None:
    text = FR_MINIMAL.replace("value = 11\n", "value = 11\nthreshold = 12\n")
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.code is PolicyErrorCode.UNKNOWN_KEY
    assert error.file.endswith("fr.toml")
    assert error.line == line_of(text, "threshold = 12")
    assert error.key == "disclosure.min_count.threshold"
    assert "threshold" in error.problem
    assert str(error) == (
        f"{error.file}:{error.line}: disclosure.min_count.threshold: unknown key threshold "
        "[UNKNOWN_KEY]"
    )


def test_a_misspelt_table_is_reported_at_its_header(tmp_path: Path) -> None:
    text = FR_MINIMAL + '\n[disclosure.min_cuont]\nvalue = 3\nsource = "typo"\n'
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.code is PolicyErrorCode.UNKNOWN_KEY
    assert error.key == "disclosure.min_cuont"
    assert error.line == line_of(text, "[disclosure.min_cuont]")


def test_an_unknown_top_level_key_is_reported(tmp_path: Path) -> None:
    text = FR_MINIMAL.replace('jurisdiction = "FR"\n', 'jurisdiction = "FR"\ncountry = "FR"\n')
    error = error_of(write(tmp_path, "fr.toml", text))
    assert (error.code, error.key, error.line) == (
        PolicyErrorCode.UNKNOWN_KEY,
        "country",
        line_of(text, "country ="),
    )


def test_an_unknown_key_in_an_inline_table_points_at_its_line(tmp_path: Path) -> None:
    text = FR_MINIMAL + '\n[disclosure.dominance]\nvalue = { n = 1, k = 85, m = 2 }\nsource = "x"\n'
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.key == "disclosure.dominance.value.m"
    assert error.line == line_of(text, "m = 2")


# -- bad values -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ('"11"', "valid integer"),  # a string where a number belongs
        ("true", "valid integer"),  # a boolean is not a count
        ("11.5", "valid integer"),
        ("0", "greater than or equal to 1"),
    ],
)
def test_a_bad_value_is_reported_with_its_line(tmp_path: Path, bad: str, expected: str) -> None:
    text = FR_MINIMAL.replace("value = 11", f"value = {bad}")
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.code is PolicyErrorCode.INVALID_VALUE
    assert error.key == "disclosure.min_count.value"
    assert error.line == line_of(text, f"value = {bad}")
    assert expected in error.problem


def test_an_unknown_dimension_names_its_position(tmp_path: Path) -> None:
    text = FR_MINIMAL + '\n[dimensions.allowed]\nvalue = ["SEX", "POSTCODE"]\nsource = "x"\n'
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.code is PolicyErrorCode.INVALID_VALUE
    assert error.key == "dimensions.allowed.value[1]"
    assert error.line == line_of(text, '"POSTCODE"')
    assert "'POSTCODE'" in error.problem


def test_an_unknown_purpose_is_an_error(tmp_path: Path) -> None:
    text = (
        FR_MINIMAL
        + '\n[purposes.allowed]\nvalue = ["scientific_research", "marketing"]\nsource = "x"\n'
    )
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.key == "purposes.allowed.value[1]"


@pytest.mark.parametrize("algorithm", ["none", "HS256"])
def test_symmetric_or_no_signature_algorithms_are_refused(tmp_path: Path, algorithm: str) -> None:
    text = FR_MINIMAL.replace(
        "[hdab]",
        '[[issuers]]\niss = "https://hdab.example.eu"\nalgorithms = ["EdDSA"]\n\n'
        f'[[issuers]]\niss = "https://other.example.eu"\nalgorithms = ["{algorithm}"]\n\n[hdab]',
    )
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.key == "issuers[1].algorithms[0]"
    assert error.line == line_of(text, f'algorithms = ["{algorithm}"]')


def test_an_issuer_must_be_https(tmp_path: Path) -> None:
    text = FR_MINIMAL.replace(
        "[hdab]", '[[issuers]]\niss = "http://hdab.example.eu"\nalgorithms = ["EdDSA"]\n\n[hdab]'
    )
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.key == "issuers[0].iss"
    assert error.line == line_of(text, 'iss = "http:')


def test_a_budget_above_the_largest_one_is_an_error(tmp_path: Path) -> None:
    text = (
        FR_MINIMAL
        + '\n[disclosure.budget]\nvalue = { applicant = 0.8, organisation = 0.5 }\nsource = "x"\n'
    )
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.key == "disclosure.budget.value.applicant"
    assert "0.5" in error.problem


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    text = FR_MINIMAL.replace("value = 11", "value = 0").replace("sigma = 6.0", 'sigma = "six"')
    error = error_of(write(tmp_path, "fr.toml", text))
    assert [issue.key for issue in error.issues] == [
        "disclosure.min_count.value",
        "disclosure.noise.value.sigma",
    ]


# -- missing things -------------------------------------------------------------------------
def test_a_missing_key_points_at_its_table(tmp_path: Path) -> None:
    text = FR_MINIMAL.replace('name = "Health Data Hub"\n', "")
    error = error_of(write(tmp_path, "fr.toml", text))
    assert (error.code, error.key, error.line) == (
        PolicyErrorCode.MISSING_KEY,
        "hdab.name",
        line_of(text, "[hdab]"),
    )


def test_a_missing_source_is_an_error(tmp_path: Path) -> None:
    text = FR_MINIMAL.replace('source = "Health Data Hub / CASD"\n', "")
    error = error_of(write(tmp_path, "fr.toml", text))
    assert (error.code, error.key) == (PolicyErrorCode.MISSING_KEY, "disclosure.min_count.source")
    assert error.line == line_of(text, "[disclosure.min_count]")


def test_a_jurisdiction_must_state_its_minimum_count(tmp_path: Path) -> None:
    start = FR_MINIMAL.index("[disclosure.min_count]")
    end = FR_MINIMAL.index("[disclosure.noise]")
    error = error_of(write(tmp_path, "fr.toml", FR_MINIMAL[:start] + FR_MINIMAL[end:]))
    assert error.code is PolicyErrorCode.INVALID_VALUE
    assert "disclosure.min_count" in error.problem


def test_the_baseline_must_state_every_required_rule(tmp_path: Path) -> None:
    text = (DEFAULT_DIRECTORY / "eu.toml").read_text()
    start = text.index("[dimensions.max_cells]")
    end = text.index("\n\n", start)
    with pytest.raises(PolicyFileError) as caught:
        load_baseline(write(tmp_path, "eu.toml", text[:start] + text[end:]))
    assert caught.value.code is PolicyErrorCode.INVALID_VALUE
    assert "missing: dimensions.max_cells" in caught.value.problem


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    error = error_of(tmp_path / "fr.toml")
    assert error.code is PolicyErrorCode.MISSING_FILE
    assert error.line is None
    assert error.file.endswith("fr.toml")


def test_a_directory_without_a_baseline_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "jurisdictions/fr.toml", FR_MINIMAL)
    with pytest.raises(PolicyFileError) as caught:
        load_policy_set(tmp_path)
    assert caught.value.code is PolicyErrorCode.MISSING_FILE
    assert caught.value.file == "eu.toml"


# -- syntax and naming ----------------------------------------------------------------------
def test_a_syntax_error_carries_its_line(tmp_path: Path) -> None:
    text = FR_MINIMAL.replace("value = 11", "value = = 11")
    error = error_of(write(tmp_path, "fr.toml", text))
    assert error.code is PolicyErrorCode.SYNTAX
    assert error.line == line_of(text, "value = = 11")
    assert "line" not in error.problem  # the position is in `line`, not repeated


def test_a_file_must_be_named_after_its_jurisdiction(tmp_path: Path) -> None:
    error = error_of(write(tmp_path, "de.toml", FR_MINIMAL))
    assert error.code is PolicyErrorCode.FILENAME_MISMATCH
    assert error.line == line_of(FR_MINIMAL, "jurisdiction =")
    assert "fr.toml" in error.problem


def test_problems_in_several_files_are_reported_together(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path / "layers")
    fr = root / "jurisdictions" / "fr.toml"
    fr.write_text(fr.read_text().replace("value = 11", "value = -1"))
    dk = root / "jurisdictions" / "dk.toml"
    dk.write_text(dk.read_text() + "\nunexpected = true\n")
    with pytest.raises(PolicyFileError) as caught:
        load_policy_set(root)
    files = {issue.file for issue in caught.value.issues}
    assert files == {"jurisdictions/fr.toml", "jurisdictions/dk.toml"}
    assert all(issue.line is not None for issue in caught.value.issues)


def test_the_example_node_layer_loads() -> None:
    layer = load_node_layer(DEFAULT_DIRECTORY / "node.example.toml")
    assert layer.node.jurisdiction is Jurisdiction.FR
    assert layer.node.datasets == frozenset({"omop-cdm-5.4"})


def test_a_node_layer_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    text = (
        (DEFAULT_DIRECTORY / "node.example.toml")
        .read_text()
        .replace("[node]\n", '[node]\nowner = "someone"\n')
    )
    with pytest.raises(PolicyFileError) as caught:
        load_node_layer(write(tmp_path, "node.toml", text))
    assert caught.value.key == "node.owner"
    assert caught.value.line == line_of(text, "owner =")


# -- locating keys --------------------------------------------------------------------------
def test_key_lines_follow_tables_arrays_dotted_and_quoted_keys() -> None:
    text = """\
top = 1
[[issuers]]
iss = "a"
[[issuers]]
iss = "b"
[issuers.extra]
k = 1
[a."quoted.key"]
x.y = 2
doc = \"\"\"
fake = 3
[not.a.table]
\"\"\"
after = 4
"""
    lines = key_lines(text)
    assert lines[("top",)] == 1
    assert lines[("issuers", 0, "iss")] == 3
    assert lines[("issuers", 1, "iss")] == 5
    assert lines[("issuers", 1, "extra", "k")] == 7
    assert lines[("a", "quoted.key", "x", "y")] == 9
    assert ("fake",) not in lines
    assert ("a", "quoted.key", "fake") not in lines
    assert ("not", "a", "table") not in lines
    assert lines[("a", "quoted.key", "after")] == 14
    assert locate(lines, ("issuers", 1, "iss", "deeper", 0)) == 5
    assert locate(lines, ("nowhere",)) is None


def test_an_issue_without_a_line_prints_without_one() -> None:
    issue = PolicyIssue("eu.toml", None, "", PolicyErrorCode.MISSING_FILE, "file not found")
    assert str(issue) == "eu.toml: file not found [MISSING_FILE]"
