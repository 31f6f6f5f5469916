"""The federation the attacks run against: real connectors and a real gateway on loopback
(`tessera.local.LocalFederation`) over synthetic OMOP databases, each node's CDM in DuckDB or
copied into PostgreSQL, and the data refreshes a hub makes between questions.

Rate limits: the per-minute limit is lifted (an attacker can always wait a minute; the
simulator should not), every other rule is the shipped law, including each approval's daily
allowance, which the gateway enforces on the attacker.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Final

import asyncpg
import duckdb

from bench.attacks.truth import NodeTruth
from policies.loader import shipped_policy_set
from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import free_port

POSTGRES_SERVER: Final = os.environ.get(
    "TESSERA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432"
)
JURISDICTIONS: Final = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)
SEED: Final = 7


def daily_allowance(jurisdictions: Sequence[Jurisdiction]) -> int:
    """Questions one approval may ask in a day, by the shipped policies (the strictest of the
    jurisdictions asked binds)."""
    return shipped_policy_set().strictest(jurisdictions).per_approval_per_day


def tessera(*commands: Sequence[str]) -> None:
    """Run `tessera` commands as a hub runs them (same interpreter), side by side, failing
    loudly."""
    running = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "tessera", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for args in commands
    ]
    failed = []
    for args, process in running:
        output, _ = process.communicate()
        if process.returncode != 0:
            failed.append(f"tessera {' '.join(args)} failed:\n{output}")
    if failed:
        raise RuntimeError("\n".join(failed))


@cache
def prepare_options() -> frozenset[str]:
    """The options `tessera connector prepare` takes (they grow as the node keeps more)."""
    done = subprocess.run(
        [sys.executable, "-m", "tessera", "connector", "prepare", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    return frozenset(re.findall(r"--[a-z][a-z-]*", done.stdout))


async def _admin(sql: str) -> None:
    con = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres", timeout=5)
    try:
        await con.execute(sql)
    finally:
        await con.close()


@dataclass
class Simulation:
    """A running federation and the truth of each node."""

    federation: LocalFederation
    postgres: bool
    truth: dict[Jurisdiction, NodeTruth] = field(default_factory=dict)
    databases: dict[Jurisdiction, str] = field(default_factory=dict)  # PostgreSQL names
    releases: dict[Jurisdiction, int] = field(default_factory=dict)

    @property
    def jurisdictions(self) -> Sequence[Jurisdiction]:
        return self.federation.jurisdictions

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        persons: int,
        postgres: bool = False,
        jurisdictions: Sequence[Jurisdiction] = JURISDICTIONS,
        seed: int = SEED,
    ) -> Simulation:
        allowance = daily_allowance(jurisdictions)
        federation = LocalFederation(
            directory=directory,
            jurisdictions=jurisdictions,
            persons=persons,
            seed=seed,
            gateway_port=free_port(),
            node_ports=[free_port() for _ in jurisdictions],
            console=False,
            policies=policies_with_rate_limits(
                directory / "policies", per_minute=1_000_000, per_day=allowance
            ),
        )
        simulation = cls(federation=federation, postgres=postgres)
        try:
            federation.prepare()
            if postgres:
                simulation._copy_all_to_postgres()
            asyncio.run(federation.start())
            simulation.truth = {j: NodeTruth.load(federation.database(j)) for j in jurisdictions}
        except BaseException:
            simulation.stop()
            raise
        return simulation

    def _copy_all_to_postgres(self) -> None:
        dsns = {}
        for j in self.jurisdictions:
            name = f"tessera_attacks_{uuid.uuid4().hex[:10]}_{j.value.lower()}"
            asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
            self.databases[j] = name
            dsns[j] = f"{POSTGRES_SERVER}/{name}"
        tessera(*(_copy(self.federation.database(j), dsn) for j, dsn in dsns.items()))
        self.federation.dsns = dsns

    def stop(self) -> None:
        self.federation.stop()
        for name in self.databases.values():
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.databases.clear()

    # -- data refreshes -----------------------------------------------------------------------
    def optouts(self, jurisdiction: Jurisdiction) -> list[int]:
        with duckdb.connect(str(self.federation.database(jurisdiction)), read_only=True) as con:
            return [
                int(r[0]) for r in con.execute("SELECT person_id FROM tessera_optout").fetchall()
            ]

    def update_registers(self, added: Mapping[Jurisdiction, Sequence[int]]) -> None:
        """Each national opt-out register gains the persons `added`: each hub stops its
        connector, replaces the register with `tessera connector prepare` and starts it
        again."""
        self._refresh(
            {j: sorted({*self.optouts(j), *ids}) for j, ids in added.items()}, rebuild=False
        )

    def rebuild(self) -> None:
        """Every hub rebuilds its CDM from its sources (the same records) and prepares it
        again: a new database file, a new release date, new record keys."""
        self._refresh({j: self.optouts(j) for j in self.jurisdictions}, rebuild=True)

    def _refresh(self, registers: Mapping[Jurisdiction, Sequence[int]], *, rebuild: bool) -> None:
        services = [self.federation.service(f"connector {j.value}") for j in registers]
        # DuckDB lets no process write a file another has open: stop the connectors first.
        for service in services:
            service.stop()
        prepared = {
            j: self._prepare(j, optouts, rebuild=rebuild) for j, optouts in registers.items()
        }
        tessera(*prepared.values())
        if rebuild:
            for j in registers:
                database = self.federation.database(j)
                Path(f"{database}.wal").unlink(missing_ok=True)
                os.replace(database.with_name(f"rebuilt-{database.name}"), database)
        if self.postgres:
            tessera(
                *(
                    _copy(self.federation.database(j), self.federation.dsns[j], "--replace")
                    for j in registers
                )
            )
        for service in services:
            service.start()

        async def ready() -> None:
            await asyncio.gather(*(s.wait_ready() for s in services))

        asyncio.run(ready())
        for j in registers:
            self.truth[j] = NodeTruth.load(self.federation.database(j))

    def _prepare(self, j: Jurisdiction, optouts: Sequence[int], *, rebuild: bool) -> list[str]:
        """Write the node's new register (and, for a rebuild, its new database beside the
        old one); the `tessera connector prepare` command that loads it: against the node's
        state directory where `prepare` keeps one, and for a rebuild under a new data release
        label where it takes one (a register update keeps the release)."""
        refresh = self.releases.get(j, 1) + 1
        self.releases[j] = refresh
        database = self.federation.database(j)
        register = database.with_name(f"optout-{j.value.lower()}-{refresh}.csv")
        register.write_text("person_id\n" + "".join(f"{i}\n" for i in optouts))
        target = database
        if rebuild:
            target = database.with_name(f"rebuilt-{database.name}")
            _copy_cdm(database, target, release_day=refresh)
        options = prepare_options()
        command = ["connector", "prepare", "--database", str(target)]
        if "--state" in options:
            command += ["--state", str(self.federation.node_state(j))]
        if rebuild and "--release" in options:
            command += ["--release", f"attacks-rebuild-{refresh}"]
        return [*command, "--optout", str(register), "--register-version", f"attacks-{refresh}"]


def _copy(database: Path, dsn: str, *options: str) -> list[str]:
    """The command copying a node's prepared DuckDB database into PostgreSQL."""
    return ["connector", "copy-to-postgres", "--database", str(database), "--dsn", dsn, *options]


def _copy_cdm(source: Path, target: Path, *, release_day: int) -> None:
    """Every CDM table of `source` into a new database `target`, without Tessera's tables
    (as a hub's extract-transform-load would write it), its release date moved on."""
    target.unlink(missing_ok=True)
    with duckdb.connect(str(target)) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute("ATTACH ? AS source (READ_ONLY)", [str(source)])
        tables = [
            str(r[0])
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'source'"
            ).fetchall()
        ]
        for table in tables:
            if table.startswith("tessera_"):
                continue  # what `prepare` adds, from the node's state
            # Names read from the simulator's own database, not input.
            con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM source."{table}"')  # noqa: S608
        con.execute(
            "UPDATE cdm_source SET cdm_release_date = cdm_release_date + ?::INTEGER",
            [release_day],
        )
        con.execute("DETACH source")
