"""`Client` (blocking) and `AsyncClient`: ask a Tessera gateway a question and get the answer
as tidy rows or a pandas DataFrame.

Authenticate as the gateway expects (README, "Permits: one per country"): an identity token
(`Authorization: Bearer`) and one permit per country, each from that country's HDAB, sent
byte for byte in its own `X-Tessera-Permit` header. Tokens are never logged or put in an
exception.

    from tessera.client import Client
    client = Client.demo()                       # the credentials `make demo` wrote
    df = client.cohort(concepts=["ICD10:E11"], by=["SEX", "AGE_BAND_10"]).frame()

    client = Client("https://gateway.example.eu/graphql",
                    token=Path("researcher.jwt"), permits=[Path("fr.jwt"), Path("de.jwt")])
    answer = client.execute(Path("examples/01_diabetes_women_40_69.graphql").read_text()).answer

    async with AsyncClient.demo() as client:
        answer = await client.cohort(concepts=["ICD10:E11"], by=["JURISDICTION"])

A refused question raises a `TesseraClientError` subclass carrying the gateway's stable code
(`tessera.client.errors`); a country that did not answer is not an error but a node status
(`answer.nodes`, the `node_status` column).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import orjson

from schema.approval import APPROVAL_CLAIM
from schema.codes import AgeAt, Jurisdiction, NoiseLevel, Sex
from schema.errors import ErrorCode
from tessera.client.answer import Answer, Response
from tessera.client.errors import InvalidQuery, Unavailable, error_from
from tessera.client.questions import Breakdowns, Concept, Question, breakdowns, cohort_question
from tessera.client.questions import criteria as make_criteria
from tessera.client.regression import REGRESSION_DOCUMENT, RegressionAnswer, regression_variables
from tessera.client.transport import (
    AiohttpTransport,
    AsyncTransport,
    HttpClientTransport,
    Reply,
    Transport,
)
from tessera.credentials import Credentials
from tessera.locations import DEMO_DIRECTORY, DEMO_GATEWAY, GATEWAY_URL_FILE

# Longer than the gateway's longest deadline (TESSERA_GATEWAY_MAX_DEADLINE_S, 60 s by default)
# plus its audit write: the gateway answers late nodes as TIMEOUT; this only catches a hang.
DEFAULT_TIMEOUT_S: Final = 90.0

Token = str | Path


def _read_token(token: Token) -> str:
    return token.read_text().strip() if isinstance(token, Path) else token.strip()


@dataclass(frozen=True, slots=True)
class Demo:
    """Where `tessera demo` left its gateway and the researcher's credentials."""

    url: str
    token: Path
    permits: tuple[Path, ...]

    @classmethod
    def locate(cls, directory: str | Path = DEMO_DIRECTORY) -> Demo:
        root = Path(directory)
        token = root / "researcher.jwt"
        if not token.is_file():
            raise FileNotFoundError(
                f"no demo credentials in {root}: run `make demo` (or `tessera demo`) first"
            )
        url_file = root / GATEWAY_URL_FILE
        url = url_file.read_text().strip() if url_file.is_file() else DEMO_GATEWAY
        return cls(url, token, tuple(sorted((root / "permits").glob("*.jwt"))))


def default_request(permits: Iterable[str]) -> str | None:
    """The data request a set of permits shares: their multi-country application id, or
    their one data request id. Read from the permits' payloads without verifying them (the
    gateway and every node verify them); None when they name several or none."""
    applications, requests = set(), set()
    for permit in permits:
        approval = _unverified_claims(permit).get(APPROVAL_CLAIM)
        if isinstance(approval, Mapping):
            if approval.get("application_id"):
                applications.add(str(approval["application_id"]))
            if approval.get("request_id"):
                requests.add(str(approval["request_id"]))
    for ids in (applications, requests):
        if len(ids) == 1:
            return ids.pop()
    return None


def _unverified_claims(token: str) -> Mapping[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, Mapping) else {}


class _Core:
    """What both clients share: the gateway, the credentials, the request and the reading of
    the reply."""

    def __init__(
        self,
        url: str,
        *,
        token: Token | None,
        permits: Iterable[Token],
        request: str | None,
        timeout_s: float,
    ) -> None:
        self.url = url
        self.credentials = Credentials.of(
            None if token is None else _read_token(token), (_read_token(p) for p in permits)
        )
        self.request = request or default_request(self.credentials.permits)
        self.timeout_s = timeout_s

    @classmethod
    def demo(cls, directory: str | Path = DEMO_DIRECTORY, **options: Any) -> Self:
        """The gateway and the researcher's credentials `make demo` wrote to `directory`."""
        found = Demo.locate(directory)
        return cls(found.url, token=found.token, permits=found.permits, **options)

    def __repr__(self) -> str:
        # Never the tokens.
        return (
            f"{type(self).__name__}({self.url!r}, token={self.credentials.bearer is not None},"
            f" permits={len(self.credentials.permits)}, request={self.request!r})"
        )

    def body(
        self, document: str, variables: Mapping[str, Any] | None, operation: str | None
    ) -> bytes:
        payload: dict[str, Any] = {"query": document}
        if variables:
            payload["variables"] = dict(variables)
        if operation:
            payload["operationName"] = operation
        return orjson.dumps(payload)

    def question(
        self,
        *,
        request: str | None,
        criteria: Mapping[str, Any] | None,
        concepts: Iterable[Concept],
        drugs: Iterable[Concept],
        sex: str | Sex | None,
        age: tuple[int | None, int | None] | None,
        by: Breakdowns | None,
        jurisdictions: Sequence[str | Jurisdiction] | None,
        total: bool,
        countries: bool,
        reference_date: dt.date | None,
        age_at: str | AgeAt | None,
        deadline_ms: int | None,
        min_nodes: int | None,
        noise: str | NoiseLevel | None,
        index: Mapping[str, Any] | None = None,
        variable: Mapping[str, Any] | None = None,
        summary: bool = True,
        outcome: Mapping[str, Any] | None = None,
        survival: Mapping[str, Any] | None = None,
    ) -> Question:
        request = request or self.request
        if request is None:
            raise InvalidQuery(
                "say which data request to ask under (request=...): the permits name none, "
                "or several",
                code=ErrorCode.INVALID_ARGUMENT,
            )
        built = make_criteria(concepts=concepts, drugs=drugs, sex=sex, age=age)
        return cohort_question(
            request=request,
            criteria={**built, **(criteria or {})},
            by=breakdowns(by),
            jurisdictions=jurisdictions,
            total=total,
            countries=countries,
            reference_date=reference_date,
            age_at=age_at,
            deadline_ms=deadline_ms,
            min_nodes=min_nodes,
            noise=noise,
            index=index,
            variable=variable,
            summary=summary,
            outcome=outcome,
            survival=survival,
        )

    @staticmethod
    def read(reply: Reply, elapsed_ms: float) -> Response:
        try:
            body = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            raise Unavailable(
                f"the gateway answered HTTP {reply.status} without a GraphQL body",
                status=reply.status,
            ) from None
        if not isinstance(body, Mapping):
            raise Unavailable("the gateway's answer is not a GraphQL response", status=reply.status)
        data = body.get("data")
        errors = body.get("errors")
        if errors:
            raise error_from(errors, data=data, status=reply.status)
        if not isinstance(data, Mapping):
            raise Unavailable(
                f"the gateway answered HTTP {reply.status} with no data", status=reply.status
            )
        return Response.read(data, elapsed_ms=elapsed_ms)


class Client(_Core):
    """A blocking client: no event loop, so it works in scripts and notebooks alike.

    `token` is the identity token, `permits` one permit per country: each a JWT, or a `Path`
    to a file holding one. `request` is the data request questions are asked under; by
    default the one the permits name.

        >>> client = Client("http://127.0.0.1:8400/graphql", token="eyJ…", permits=[])
        >>> client.request is None
        True
    """

    def __init__(
        self,
        url: str = DEMO_GATEWAY,
        *,
        token: Token | None = None,
        permits: Iterable[Token] = (),
        request: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(url, token=token, permits=permits, request=request, timeout_s=timeout_s)
        self.transport: Transport = transport or HttpClientTransport()

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation: str | None = None,
    ) -> Response:
        """Send any GraphQL document; its `cohort` fields come back read (`Response.answers`).
        Raises the typed error of the first GraphQL error, if any (partial data in
        `error.data`)."""
        started = time.perf_counter()
        reply = self.transport.post(
            self.url,
            self.body(document, variables, operation),
            self.credentials.headers(),
            self.timeout_s,
        )
        return self.read(reply, (time.perf_counter() - started) * 1000)

    def cohort(
        self,
        *,
        concepts: Iterable[Concept] = (),
        by: Breakdowns | None = None,
        sex: str | Sex | None = None,
        age: tuple[int | None, int | None] | None = None,
        drugs: Iterable[Concept] = (),
        criteria: Mapping[str, Any] | None = None,
        jurisdictions: Sequence[str | Jurisdiction] | None = None,
        request: str | None = None,
        total: bool = True,
        countries: bool = True,
        reference_date: dt.date | None = None,
        age_at: str | AgeAt | None = None,
        deadline_ms: int | None = None,
        min_nodes: int | None = None,
        noise: str | NoiseLevel | None = None,
        index: Mapping[str, Any] | None = None,
        variable: Mapping[str, Any] | None = None,
        summary: bool = True,
        outcome: Mapping[str, Any] | None = None,
        survival: Mapping[str, Any] | None = None,
    ) -> Answer:
        """Ask for a cohort and its breakdowns.

        `concepts` (`"ICD10:E11"`, `"ATC:A10BA02"`, `"LOINC:39156-5"`: all must hold, each
        with its descendants), `sex`, `age=(min, max)` and `drugs` make the criteria; any
        other `CriteriaInput` field goes in `criteria`. Ages are taken at each person's
        first event of the first concept (`age_at="INDEX_EVENT"`, the default with concepts)
        or at `reference_date` (`age_at="REFERENCE_DATE"`). `by` is one table
        (`["SEX", "AGE_BAND_10"]`) or several (`[["SEX"], ["JURISDICTION"]]`). `total=False`
        leaves out the pooled count (a securely pooled count costs privacy budget of its
        own); `countries=False` leaves out each country's own count: a pooled count is then
        the question's only total, released (and charged) once. `index` is the question's
        index event (`tessera.client.index`), with criteria relative to it in `criteria`
        (`{"relative": [tessera.client.relative(...)]}`). `variable` (`Variable.age`,
        `Variable.measurement`) asks its summary (`Answer.summary_frame`) unless
        `summary=False`, and bins it in a breakdown by VALUE_BIN (`Answer.quantiles_frame`).
        `outcome` (`tessera.client.outcome`, with an `index`) asks its incidence rate
        (`Answer.rate_frame`).
        `survival` (`tessera.client.survival`, with an `index`) asks its curves and log-rank
        tests (`Answer.survival_frame`, `Answer.log_rank_frame`, `plot_survival`).

            >>> client = Client.demo()  # doctest: +SKIP
            >>> answer = client.cohort(concepts=["ICD10:E11"], by=["AGE_BAND_10"])  # doctest: +SKIP
            >>> answer.frame()[["age_min", "age_max", "value", "sd", "status"]]  # doctest: +SKIP
        """
        question = self.question(
            request=request,
            criteria=criteria,
            concepts=concepts,
            drugs=drugs,
            sex=sex,
            age=age,
            by=by,
            jurisdictions=jurisdictions,
            total=total,
            countries=countries,
            reference_date=reference_date,
            age_at=age_at,
            deadline_ms=deadline_ms,
            min_nodes=min_nodes,
            noise=noise,
            index=index,
            variable=variable,
            summary=summary,
            outcome=outcome,
            survival=survival,
        )
        return self.execute(question.document, question.variables).answer

    def regression(
        self,
        *,
        index: Mapping[str, Any],
        model: Mapping[str, Any],
        criteria: Mapping[str, Any] | None = None,
        request: str | None = None,
        jurisdictions: Sequence[str | Jurisdiction] | None = None,
        reference_date: dt.date | None = None,
        age_at: str | AgeAt | None = None,
        noise: str | NoiseLevel | None = None,
        max_iterations: int | None = None,
    ) -> RegressionAnswer:
        """Fit a generalised linear model over a cohort with an index event (README,
        "Regression"). `index` is an `IndexEventInput` (`tessera.client.index`), `model` a
        `RegressionModelInput` in GraphQL form: `{"family": "BINOMIAL", "outcome": {"kind":
        "EVENT", "event": {"domain": "DEATH"}, "window": {"startDays": 0, "endDays": 28}},
        "covariates": [{"name": "age", "kind": "AGE", "lo": 18, "hi": 100}, ...]}`.

            >>> fit = Client.demo().regression(index=..., model=...)  # doctest: +SKIP
            >>> fit.frame()  # one row per coefficient  # doctest: +SKIP
        """
        asked = request or self.request
        if asked is None:
            raise InvalidQuery(
                "say which data request to ask under (request=...): the permits name none, "
                "or several",
                code=ErrorCode.INVALID_ARGUMENT,
            )
        variables = regression_variables(
            request=asked,
            index=index,
            model=model,
            criteria=criteria,
            jurisdictions=None if jurisdictions is None else [str(j) for j in jurisdictions],
            reference_date=reference_date,
            age_at=None if age_at is None else str(age_at),
            noise=None if noise is None else str(noise),
            max_iterations=max_iterations,
        )
        response = self.execute(REGRESSION_DOCUMENT, variables)
        return RegressionAnswer(response.data["regression"])


class AsyncClient(_Core):
    """The same client for asyncio, over aiohttp; `async with` closes its session.

    async with AsyncClient.demo() as client:
        answers = await asyncio.gather(
            client.cohort(concepts=["ICD10:E11"], by=["SEX"]),
            client.cohort(concepts=["ICD10:I10"], by=["SEX"]),
        )
    """

    def __init__(
        self,
        url: str = DEMO_GATEWAY,
        *,
        token: Token | None = None,
        permits: Iterable[Token] = (),
        request: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: AsyncTransport | None = None,
    ) -> None:
        super().__init__(url, token=token, permits=permits, request=request, timeout_s=timeout_s)
        self.transport: AsyncTransport = transport or AiohttpTransport()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    async def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation: str | None = None,
    ) -> Response:
        """As `Client.execute`."""
        started = time.perf_counter()
        reply = await self.transport.post(
            self.url,
            self.body(document, variables, operation),
            self.credentials.headers(),
            self.timeout_s,
        )
        return self.read(reply, (time.perf_counter() - started) * 1000)

    async def cohort(
        self,
        *,
        concepts: Iterable[Concept] = (),
        by: Breakdowns | None = None,
        sex: str | Sex | None = None,
        age: tuple[int | None, int | None] | None = None,
        drugs: Iterable[Concept] = (),
        criteria: Mapping[str, Any] | None = None,
        jurisdictions: Sequence[str | Jurisdiction] | None = None,
        request: str | None = None,
        total: bool = True,
        countries: bool = True,
        reference_date: dt.date | None = None,
        age_at: str | AgeAt | None = None,
        deadline_ms: int | None = None,
        min_nodes: int | None = None,
        noise: str | NoiseLevel | None = None,
        index: Mapping[str, Any] | None = None,
        variable: Mapping[str, Any] | None = None,
        summary: bool = True,
        outcome: Mapping[str, Any] | None = None,
        survival: Mapping[str, Any] | None = None,
    ) -> Answer:
        """As `Client.cohort`."""
        question = self.question(
            request=request,
            criteria=criteria,
            concepts=concepts,
            drugs=drugs,
            sex=sex,
            age=age,
            by=by,
            jurisdictions=jurisdictions,
            total=total,
            countries=countries,
            reference_date=reference_date,
            age_at=age_at,
            deadline_ms=deadline_ms,
            min_nodes=min_nodes,
            noise=noise,
            index=index,
            variable=variable,
            summary=summary,
            outcome=outcome,
            survival=survival,
        )
        return (await self.execute(question.document, question.variables)).answer
