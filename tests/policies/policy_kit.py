"""Builders and hypothesis strategies shared by the policy tests.

Imported as `tests.policies.policy_kit` (`tests/test_kits.py`).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

from policies.loader import DEFAULT_DIRECTORY
from policies.model import RULE_PATHS, NodeLayer, Rules
from policies.plan import QueryPlan
from policies.principal import ApplicantKind, ApprovalView, ResearcherView
from policies.purposes import Purpose
from schema.codes import Dimension, Jurisdiction
from schema.query import CohortQuery, Criteria

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
REQUEST = "DR-2026-0042"
DATASET = "omop-cdm-5.4"
RESEARCHER = ResearcherView(subject="researcher@example.org")


def approval(
    *,
    purpose: str = "scientific_research",
    jurisdictions: tuple[Jurisdiction, ...] = (Jurisdiction.FR, Jurisdiction.DE),
    kind: ApplicantKind | None = ApplicantKind.PRIVATE_ENTITY,
    request_id: str = REQUEST,
    application_id: str | None = None,
    datasets: tuple[str, ...] = (DATASET,),
    valid_from: dt.datetime | None = NOW - dt.timedelta(days=30),
    valid_until: dt.datetime | None = NOW + dt.timedelta(days=30),
) -> ApprovalView:
    return ApprovalView(
        request_id=request_id,
        purpose=purpose,
        jurisdictions=frozenset(jurisdictions),
        datasets=frozenset(datasets),
        application_id=application_id,
        applicant="Example Research Institute",
        applicant_kind=kind,
        valid_from=valid_from,
        valid_until=valid_until,
    )


def query(*tables: tuple[Dimension, ...], criteria: dict[str, Any] | None = None) -> CohortQuery:
    return CohortQuery(
        criteria=Criteria.model_validate(
            criteria or {"conditions": [{"vocabulary": "ICD10", "code": "E11"}]}
        ),
        reference_date=dt.date(2026, 1, 1),
        tables=list(tables) or [()],
    )


def plan(
    *tables: tuple[Dimension, ...],
    jurisdictions: tuple[Jurisdiction, ...] = (Jurisdiction.FR, Jurisdiction.DE),
    request_id: str = REQUEST,
    criteria: dict[str, Any] | None = None,
    datasets: frozenset[str] | None = None,
) -> QueryPlan:
    return QueryPlan(
        request_id=request_id,
        jurisdictions=jurisdictions,
        query=query(*tables, criteria=criteria),
        datasets=datasets,
    )


def sourced(value: Any, source: str = "test rule", verified: bool = False) -> dict[str, Any]:
    return {"value": value, "source": source, "verified": verified}


def node_layer(jurisdiction: Jurisdiction = Jurisdiction.FR, **sections: Any) -> NodeLayer:
    """A node layer stating the given sections, e.g. dimensions={"allowed": sourced([...])}."""
    return NodeLayer.model_validate(
        {
            "name": "test node",
            "node": {
                "id": f"node-{jurisdiction.value.lower()}",
                "jurisdiction": jurisdiction.value,
                "datasets": [DATASET],
            },
            **sections,
        }
    )


L = TypeVar("L", bound=Rules)


def with_rule(layer: L, path: tuple[str, str], value: Any) -> L:
    """A copy of a layer with one rule's value replaced (validated like a file)."""
    data = layer.model_dump()
    data[path[0]][path[1]]["value"] = value
    return type(layer).model_validate(data)


def copy_shipped(target: Path) -> Path:
    """A writable copy of the shipped policy directory."""
    shutil.copytree(DEFAULT_DIRECTORY, target)
    return target


# -- hypothesis -----------------------------------------------------------------------------
def _values() -> dict[tuple[str, str], st.SearchStrategy[Any]]:
    percent = st.integers(1, 100).map(float)
    return {
        ("disclosure", "min_count"): st.integers(1, 1000),
        # Small bases so that divisibility (the rounding order) actually occurs.
        ("disclosure", "rounding_base"): st.integers(1, 60),
        ("disclosure", "noise"): st.fixed_dictionaries(
            {"sigma": st.sampled_from([0.5, 1.0, 2.5, 5.0, 10.0, 1000.0])}
        ),
        ("disclosure", "budget"): st.fixed_dictionaries(
            {
                "applicant": st.sampled_from([0.01, 0.1, 0.25, 0.5]),
                "organisation": st.sampled_from([0.01, 0.1, 0.25, 0.5]),
            }
        ),
        ("disclosure", "secure_pooling"): st.fixed_dictionaries(
            {"enabled": st.booleans(), "min_nodes": st.integers(2, 32)}
        ),
        ("disclosure", "dominance"): st.fixed_dictionaries({"n": st.integers(1, 10), "k": percent}),
        ("disclosure", "p_percent"): percent,
        ("dimensions", "allowed"): st.frozensets(st.sampled_from([d.value for d in Dimension])),
        ("dimensions", "not_allowed"): st.frozensets(st.sampled_from([d.value for d in Dimension])),
        ("dimensions", "min_age_band_width"): st.sampled_from([1, 5, 10, 15, 20, 25, 130]),
        ("dimensions", "max_cells"): st.integers(1, 1_000_000),
        ("purposes", "allowed"): st.frozensets(st.sampled_from([p.value for p in Purpose])),
        ("purposes", "public_body_only"): st.frozensets(
            st.sampled_from([p.value for p in Purpose])
        ),
        ("optout", "required"): st.booleans(),
        ("rate_limits", "per_researcher_per_minute"): st.integers(1, 1_000_000),
        ("rate_limits", "per_approval_per_day"): st.integers(1, 1_000_000),
        ("approvals", "revoked"): st.frozensets(st.sampled_from(["DR-1", "DR-2", "DR-3", REQUEST])),
    }


VALUES = _values()
assert set(VALUES) == set(RULE_PATHS), "every rule needs a strategy"


@st.composite
def rules(draw: st.DrawFn, *, complete: bool = False) -> Rules:
    """A random layer: each rule absent or a random value (all present when `complete`)."""
    sections: dict[str, dict[str, Any]] = {}
    for path, values in VALUES.items():
        if not complete and draw(st.booleans()):
            continue
        value = draw(values)
        if isinstance(value, frozenset):
            value = sorted(value)
        source = draw(st.sampled_from(["law", "national rule", "node rule"]))
        sections.setdefault(path[0], {})[path[1]] = sourced(value, source, draw(st.booleans()))
    return Rules.model_validate(sections)
