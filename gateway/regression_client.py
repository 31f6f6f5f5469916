"""Asking one node for one regression iteration over `tessera/1`: signed like a question
(`gateway.nodes.post_signed`), the answer read as a `RegressionPart`, checked to be this
node's and this question's; a failure becomes a part without sums, with its reason."""

from __future__ import annotations

from typing import Final, Protocol

import aiohttp
from pydantic import ValidationError

from gateway.federation import NodeInfo
from gateway.nodes import NodeUnreached, post_signed
from gateway.regression_fit import REJECTED_PART
from schema.codes import Jurisdiction, NodeStatus
from schema.regression import REGRESSION_PATH, RegressionPart, RegressionStep
from schema.result import Reason
from schema.wire import APPROVAL_HEADER, NodeError
from trust.request_token import RequestSigner

# A node's failure to answer an iteration, as a reason of the fit.
NODE_FAILED: Final = "REGRESSION_NODE_FAILED"


class RegressionClient(Protocol):
    async def step(
        self,
        node: NodeInfo,
        step: RegressionStep,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the transport's budget
    ) -> RegressionPart: ...


class HttpRegressionClient:
    """`tessera/1` regression iterations over HTTP: signed like questions, each answer read
    as a `RegressionPart` and checked to be for this node and question."""

    def __init__(self, session: aiohttp.ClientSession, signer: RequestSigner) -> None:
        self._session = session
        self._signer = signer

    async def step(
        self,
        node: NodeInfo,
        step: RegressionStep,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the transport's budget
    ) -> RegressionPart:
        body = step.model_dump_json().encode()
        try:
            status, payload = await post_signed(
                self._session,
                self._signer,
                node,
                REGRESSION_PATH,
                body,
                timeout=timeout,
                headers={APPROVAL_HEADER: approval_token},
            )
        except NodeUnreached as e:
            return failed(node.jurisdiction, step, e.status.value, e.message)
        if status != 200:
            try:
                error = NodeError.model_validate_json(payload)
                return failed(node.jurisdiction, step, error.code.value, error.message)
            except ValidationError:
                return failed(node.jurisdiction, step, "ERROR", f"the node answered HTTP {status}")
        try:
            part = RegressionPart.model_validate_json(payload)
        except ValidationError:
            return failed(node.jurisdiction, step, REJECTED_PART, "not a regression part")
        if part.jurisdiction is not node.jurisdiction or part.query_id != step.request.query_id:
            return failed(
                node.jurisdiction, step, REJECTED_PART, "the part is for another question"
            )
        return part


def failed(
    jurisdiction: Jurisdiction, step: RegressionStep, rule: str, message: str
) -> RegressionPart:
    """A node's failure as a part without sums (the fit leaves it out with this reason)."""
    return RegressionPart(
        query_id=step.request.query_id,
        jurisdiction=jurisdiction,
        status=NodeStatus.DENIED,
        reasons=[
            Reason(
                rule=rule if rule.replace("_", "").isalnum() and rule.isupper() else NODE_FAILED,
                jurisdiction=jurisdiction,
                message=message[:500],
            )
        ],
    )
