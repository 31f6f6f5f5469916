"""The Python client of a Tessera gateway: ask a question, get a tidy DataFrame.

    from tessera.client import Client
    client = Client.demo()   # or Client(url, token=Path("me.jwt"), permits=[Path("fr.jwt"), ...])
    df = client.cohort(concepts=["ICD10:E11"], by=["SEX", "AGE_BAND_10"]).frame()

`Client` blocks, `AsyncClient` is for asyncio; both send any GraphQL document too
(`execute`). Refusals raise the subclasses of `TesseraClientError`, each with the gateway's
stable code. DataFrames need the `client` extra (`pip install 'tessera[client]'`: pandas and
pyarrow); `rows()` needs nothing.
"""

from __future__ import annotations

from tessera.client.answer import POOLED, Answer, Count, Node, Response, Table
from tessera.client.atlas import criteria_from_atlas
from tessera.client.client import AsyncClient, Client, Demo, default_request
from tessera.client.errors import (
    AuthenticationError,
    InvalidQuery,
    PermissionDenied,
    RateLimited,
    TesseraClientError,
    Unavailable,
)
from tessera.client.frames import read_csv
from tessera.client.questions import Variable, event, index, outcome, relative
from tessera.client.regression import RegressionAnswer
from tessera.client.survival import plot_survival, survival

__all__ = [
    "POOLED",
    "Answer",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "Count",
    "Demo",
    "InvalidQuery",
    "Node",
    "PermissionDenied",
    "RateLimited",
    "RegressionAnswer",
    "Response",
    "Table",
    "TesseraClientError",
    "Unavailable",
    "Variable",
    "criteria_from_atlas",
    "default_request",
    "event",
    "index",
    "outcome",
    "plot_survival",
    "read_csv",
    "relative",
    "survival",
]
