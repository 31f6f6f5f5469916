"""Publishing the effective rules, and checking a policy directory as `tessera policy check`
will."""

from __future__ import annotations

import json
from pathlib import Path

from policies.loader import DEFAULT_DIRECTORY, PolicyErrorCode
from policies.model import Budget, Dominance, Noise
from policies.policy_set import PolicySet
from policies.transparency import (
    INEFFECTIVE_RULE,
    check_policy_dir,
    published_policies,
    render_policies,
    render_value,
)
from schema.codes import Dimension, Jurisdiction
from tests.policies.policy_kit import copy_shipped


def test_every_jurisdiction_is_published_with_its_sources(shipped: PolicySet) -> None:
    published = published_policies(shipped)
    assert [p.jurisdiction for p in published] == list(shipped.covered)
    france = next(p for p in published if p.jurisdiction is Jurisdiction.FR)
    min_count = next(r for r in france.rules if r.rule == "disclosure.min_count")
    assert (min_count.value, min_count.verified, min_count.layers) == ("11", True, ("France",))
    assert "CASD" in min_count.source
    assert min_count.order == "higher is stricter"
    assert france.hdab.name.startswith("Health Data Hub")
    assert france.issuers == ()
    assert france.layers == ("EU baseline (EHDS)", "France")
    # Ready for a public API: plain JSON.
    assert json.loads(france.model_dump_json())["rules"][0]["rule"] == "disclosure.min_count"


def test_values_render_deterministically() -> None:
    assert render_value(frozenset({Dimension.SEX, Dimension.JURISDICTION})) == "[JURISDICTION, SEX]"
    assert render_value(frozenset({"DR-2", "DR-1"})) == "[DR-1, DR-2]"
    assert render_value(frozenset()) == "[]"
    assert render_value(True) == "true"
    assert render_value(85.0) == "85"
    assert render_value(Dominance(n=1, k=85)) == "n=1, k=85%"
    assert render_value(Noise(sigma=5)) == "sd 5 (coarse: 10)"
    assert render_value(Budget(applicant=0.5, organisation=0.25)) == (
        "rho 0.5 per applicant, 0.25 per organisation"
    )


def test_the_shipped_directory_checks_clean() -> None:
    report = check_policy_dir(DEFAULT_DIRECTORY)
    assert report.ok
    assert report.exit_code == 0
    assert report.warnings == ()
    assert "eu.toml" in report.files
    assert "node.example.toml" in report.files
    # Eleven jurisdictions, plus France as the example node sees it.
    assert len(report.policies) == 12
    text = report.render()
    assert "0 errors, 0 warnings" in text
    assert "FR — France\n" in text
    assert "FR — France (node tessera-node-fr)" in text
    assert "disclosure.min_count = 11  (verified; from France)" in text
    assert "dimensions.min_age_band_width = 10  (UNVERIFIED; from node tessera-node-fr)" in text
    assert "must be confirmed by the HDAB before production" in text


def test_errors_are_listed_with_file_and_line(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path / "layers")
    dk = root / "jurisdictions" / "dk.toml"
    text = dk.read_text()
    dk.write_text(text.replace("[disclosure.min_count]\n", "[disclosure.min_count]\nminimum = 4\n"))
    report = check_policy_dir(root)
    assert not report.ok
    assert report.exit_code == 1
    (issue,) = report.issues
    assert (issue.file, issue.key, issue.code) == (
        "jurisdictions/dk.toml",
        "disclosure.min_count.minimum",
        PolicyErrorCode.UNKNOWN_KEY,
    )
    assert issue.line is not None
    assert dk.read_text().splitlines()[issue.line - 1] == "minimum = 4"
    assert f"jurisdictions/dk.toml:{issue.line}: disclosure.min_count.minimum" in report.render()
    # The other jurisdictions are still checked and shown.
    assert Jurisdiction.FR in {p.jurisdiction for p in report.policies}
    assert Jurisdiction.DK not in {p.jurisdiction for p in report.policies}


def test_a_value_looser_than_the_baseline_is_a_warning(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path / "layers")
    dk = root / "jurisdictions" / "dk.toml"
    dk.write_text(dk.read_text().replace("value = 5\n", "value = 2\n", 1))
    report = check_policy_dir(root)
    assert report.ok  # legal, but without effect
    (warning,) = report.warnings
    assert (warning.file, warning.key, warning.code) == (
        "jurisdictions/dk.toml",
        "disclosure.min_count",
        INEFFECTIVE_RULE,
    )
    assert warning.line is not None
    assert "2 has no effect" in warning.message
    assert "require 3" in warning.message
    assert "Warnings:" in report.render()


def test_a_node_layer_for_a_jurisdiction_without_a_file_is_an_error(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path / "layers")
    node = root / "node.example.toml"
    node.write_text(node.read_text().replace('jurisdiction = "FR"', 'jurisdiction = "AT"'))
    report = check_policy_dir(root)
    (issue,) = report.issues
    assert (issue.file, issue.key) == ("node.example.toml", "node.jurisdiction")
    assert "AT" in issue.problem


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    report = check_policy_dir(tmp_path / "nowhere")
    assert not report.ok
    assert report.issues[0].code is PolicyErrorCode.MISSING_FILE


def test_a_directory_without_a_baseline_shows_no_effective_policy(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path / "layers")
    (root / "eu.toml").unlink()
    report = check_policy_dir(root)
    assert [issue.file for issue in report.issues] == ["eu.toml"]
    assert report.policies == ()


def test_published_policies_render_as_text(shipped: PolicySet) -> None:
    text = render_policies(published_policies(shipped))
    assert text.count("HDAB: ") == len(shipped.covered)
    assert "DE — Germany" in text
    assert "disclosure.dominance = n=1, k=85%" in text


def test_a_national_refusal_of_a_dimension_is_published_as_the_difference(tmp_path: Path) -> None:
    # A jurisdiction states only the dimension it refuses; the allow-list stays the baseline's.
    root = copy_shipped(tmp_path / "layers")
    dk = root / "jurisdictions" / "dk.toml"
    dk.write_text(
        dk.read_text()
        + '\n[dimensions.not_allowed]\nvalue = ["CALENDAR_YEAR"]\nsource = "DK restriction"\n'
    )
    report = check_policy_dir(root)
    assert report.ok
    assert report.warnings == ()
    text = report.render()
    denmark = text[text.index("DK — Denmark") :]
    denmark = denmark[: denmark.index("\n\n")]
    assert (
        "dimensions.allowed = [JURISDICTION, SEX, AGE_BAND_5, AGE_BAND_10, AGE_BAND_20, "
        "CALENDAR_YEAR, VALUE_BIN, FOLLOW_UP]  (UNVERIFIED; from EU baseline (EHDS))" in denmark
    )
    assert "dimensions.not_allowed = [CALENDAR_YEAR]  (UNVERIFIED; from Denmark)" in denmark
    assert "DK restriction" in denmark
