"""Policies reloaded while a service runs: a change applies whole, a broken file changes
nothing, and a question keeps the policy it started with."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from pathlib import Path

import pytest

from policies.live import LivePolicy, files_digest
from policies.loader import load_policy_set, policy_files
from policies.policy_set import PolicySet
from schema.codes import Jurisdiction
from tests.policies.policy_kit import copy_shipped

FR = Jurisdiction.FR


def live(directory: Path) -> LivePolicy[PolicySet]:
    return LivePolicy(
        lambda: load_policy_set(directory), lambda: policy_files(directory), name="test policies"
    )


def revoke(directory: Path, *request_ids: str) -> None:
    """Set FR's revoked permits (request ids) in the policy directory."""
    path = directory / "jurisdictions" / "fr.toml"
    listed = ", ".join(f'"{r}"' for r in request_ids)
    path.write_text(
        re.sub(
            r"(\[approvals\.revoked\]\nvalue = )\[[^\]]*\]", rf"\g<1>[{listed}]", path.read_text()
        )
    )


def break_file(directory: Path) -> None:
    path = directory / "jurisdictions" / "fr.toml"
    path.write_text(path.read_text().replace("value = 11", 'value = "eleven"', 1))


def test_a_change_applies_whole_and_a_held_policy_stays_as_it_was(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path / "policies")
    policies = live(directory)
    held = policies.current
    assert not policies.reload()  # nothing changed: nothing read
    assert policies.current is held
    revoke(directory, "DR-2026-0042-FR")
    assert policies.reload()
    assert policies.current is not held
    assert policies.current.effective(FR).revoked == {"DR-2026-0042-FR"}
    # What a question read at its start is untouched: it sees the old policy to its end.
    assert held.effective(FR).revoked == frozenset()
    assert policies.details()["last_reload"] == "ok"
    assert policies.details()["version"] == files_digest(policy_files(directory))[:16]


def test_a_broken_change_keeps_the_policy_in_force_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = copy_shipped(tmp_path / "policies")
    policies = live(directory)
    before = policies.current
    version = policies.details()["version"]
    break_file(directory)
    with caplog.at_level(logging.ERROR, logger="policies.live"):
        assert not policies.reload()
        assert not policies.reload()  # the same broken files: said once
    assert policies.current is before
    failure = policies.failure
    assert failure is not None
    assert "jurisdictions/fr.toml:" in failure.problem
    assert "disclosure.min_count.value" in failure.problem
    details = policies.details()
    assert details["version"] == version
    assert details["last_reload"].startswith("failed at ")
    assert "the previous policy stays in force" in details["last_reload"]
    assert "jurisdictions/fr.toml" in details["last_reload"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "jurisdictions/fr.toml" in errors[0].getMessage()
    # Fixed, it applies; put back as it was, the failure is forgotten.
    copy_shipped(tmp_path / "fresh")
    (directory / "jurisdictions" / "fr.toml").write_bytes(
        (tmp_path / "fresh" / "jurisdictions" / "fr.toml").read_bytes()
    )
    assert not policies.reload()  # the files are those in force again
    assert policies.failure is None
    revoke(directory, "DR-1")
    assert policies.reload()
    assert policies.details()["last_reload"] == "ok"


def test_a_removed_jurisdiction_file_is_a_change_too(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path / "policies")
    policies = live(directory)
    (directory / "jurisdictions" / "dk.toml").unlink()
    assert policies.reload()
    assert Jurisdiction.DK not in policies.current.jurisdictions


def test_a_policy_that_does_not_load_fails_the_start(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path / "policies")
    break_file(directory)
    with pytest.raises(Exception, match=r"fr\.toml"):
        live(directory)


def test_a_fixed_policy_never_changes() -> None:
    fixed = LivePolicy.fixed("the policy")
    assert not fixed.reload()
    assert fixed.current == "the policy"


async def test_watching_reloads_on_request_and_on_sighup(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path / "policies")
    policies = live(directory)
    before = policies.digest

    async def changed(since: str) -> None:
        while policies.digest == since:  # noqa: ASYNC110 - a reload sets no event to wait on
            await asyncio.sleep(0.01)

    # An interval far longer than the test: only the requests make it reload.
    async with policies.watching(3600):
        revoke(directory, "DR-1")
        policies.request_reload()
        await asyncio.wait_for(changed(before), 10)
        assert policies.current.effective(FR).revoked == {"DR-1"}
        after = policies.digest
        revoke(directory, "DR-1", "DR-2")
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(changed(after), 10)
        assert policies.current.effective(FR).revoked == {"DR-1", "DR-2"}


async def test_watching_polls_the_files(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path / "policies")
    policies = live(directory)
    before = policies.digest
    async with policies.watching(0.05, sighup=False):
        revoke(directory, "DR-3")
        while policies.digest == before:  # noqa: ASYNC110 - a reload sets no event
            await asyncio.sleep(0.01)
    assert policies.current.effective(FR).revoked == {"DR-3"}


async def test_the_reload_interval_is_bounded(tmp_path: Path) -> None:
    policies = LivePolicy.fixed(1)
    with pytest.raises(ValueError, match="reload interval"):
        async with policies.watching(0):
            pass
