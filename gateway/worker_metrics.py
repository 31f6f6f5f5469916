"""`GET /metrics` of a gateway of several processes: every worker's series, whichever worker
accepts the scrape.

Each worker writes its own exposition to a file of the directory its parent made, every
`SNAPSHOT_S` seconds and as it stops; the worker that answers a scrape renders its own series
fresh and adds the other workers' latest files, every series labelled with its `worker`. A
worker started again counts from zero under the same label (Prometheus sees a counter reset,
as after a restart of one process); another worker's series may be up to `SNAPSHOT_S` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import GatewayMetrics

SNAPSHOT_S: Final = 1.0
WORKER_LABEL: Final = "worker"


class WorkerMetrics:
    """One worker's part of the gateway's metrics, `GatewayMetrics.render`'s replacement."""

    def __init__(self, metrics: GatewayMetrics, directory: Path, worker: int) -> None:
        self._metrics = metrics
        self._directory = directory
        self._worker = worker

    def _file(self, worker: int) -> Path:
        return self._directory / f"worker-{worker}.prom"

    def snapshot(self) -> None:
        """Write this worker's series for the others to read (whole, or not at all)."""
        target = self._file(self._worker)
        partial = target.with_suffix(".partial")
        partial.write_bytes(self._metrics.render())
        os.replace(partial, target)

    def render(self) -> bytes:
        texts = {self._worker: self._metrics.render().decode()}
        for path in sorted(self._directory.glob("worker-*.prom")):
            number = path.stem.removeprefix("worker-")
            if number.isdigit() and int(number) not in texts:
                with contextlib.suppress(FileNotFoundError):
                    texts[int(number)] = path.read_text()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(merged(texts)))
        return generate_latest(registry)

    async def keep_writing(self, app: web.Application) -> AsyncIterator[None]:
        """A cleanup context: snapshots while the worker runs, and a last one as it stops."""

        async def loop() -> None:
            while True:
                await asyncio.to_thread(self.snapshot)
                await asyncio.sleep(SNAPSHOT_S)

        task = asyncio.create_task(loop(), name="metrics snapshots")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
            with contextlib.suppress(OSError):
                self.snapshot()

    async def view(self, request: web.Request) -> web.Response:
        # Reads a few small files: off the loop.
        body = await asyncio.to_thread(self.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def merged(texts: dict[int, str]) -> list[Metric]:
    """The families of every worker's exposition, one family per name, each sample labelled
    with its worker."""
    families: dict[str, Metric] = {}
    for worker, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            into = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            for sample in family.samples:
                into.add_sample(
                    sample.name,
                    {**sample.labels, WORKER_LABEL: str(worker)},
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
    return list(families.values())


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families
