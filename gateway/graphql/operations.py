"""Which operation of a document runs: the GraphQL spec's rules, which strawberry does not
apply in full. A document of several operations without an `operationName` is refused (it
would run the first), and neither an `operationName` that is not a GraphQL name nor one the
document lacks is ever quoted back (strawberry's refusal quotes it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from schema.errors import ErrorCode

# A GraphQL Name (spec 2.1.9), bounded: an operation's name is a word, not a payload.
MAX_OPERATION_NAME: Final = 128
OPERATION_NAME: Final = re.compile(rf"[_A-Za-z][_0-9A-Za-z]{{0,{MAX_OPERATION_NAME - 1}}}")

BAD_OPERATION_NAME: Final = (
    f"operationName must be a GraphQL name of at most {MAX_OPERATION_NAME} characters"
)
UNKNOWN_OPERATION: Final = "no operation in the document has the name given as operationName"
NAME_REQUIRED: Final = "the document holds several operations: name the one to run in operationName"


def valid_operation_name(name: object) -> bool:
    """Whether a request's `operationName` may be used: absent, or a bounded GraphQL name."""
    return name is None or (isinstance(name, str) and OPERATION_NAME.fullmatch(name) is not None)


class OneOperation(SchemaExtension):
    """Refuses a document of several operations when no `operationName` chooses one. After
    the validation cache in the extension list: its errors are kept, this one added."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # `operation_name` falls back to the first operation's name; what the request
        # gave is only kept privately (should it move, every such document is refused:
        # closed, and the tests say so).
        given = getattr(context, "_provided_operation_name", None)
        if given is None and document is not None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                error = GraphQLError(
                    NAME_REQUIRED,
                    extensions={"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value},
                )
                context.pre_execution_errors = [*(context.pre_execution_errors or ()), error]
        yield
