"""The HTTP service's request and response bodies (pydantic; BentoML answers 400 with the field
path and what was expected when one does not validate), the refusal a route answers with a
status of its choosing, and validation errors raised after parsing that read like pydantic's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from serving.core.columns import REASON_COLUMNS

Tier = Literal["high", "medium", "low"]


class Refused(Exception):
    """A request the service answers with `status` and `{"error": message}` (not a crash)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ScoreRequest(BaseModel):
    """Customers to score: either their ids, looked up in the latest scored snapshot, or their
    feature records (one JSON object per customer, the features `retain features` writes)."""

    model_config = ConfigDict(extra="forbid", title="ScoreRequest")

    customer_ids: list[StrictStr] | None = Field(
        default=None,
        description="Customer ids to look up in the latest scored snapshot (`retain score`); "
        "an unknown id gets an error in its own result, the others are scored.",
        examples=[["C0000042", "C0000043"]],
    )
    records: list[dict[str, Any]] | None = Field(
        default=None,
        description="Feature records: every feature of the champion models (null for a missing "
        "value), optionally `customer_id` to label the result.",
    )
    reasons: StrictBool = Field(
        default=True, description="Also write up to three reasons for each customer's risk."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ScoreRequest:
        if self.customer_ids is not None and self.records is not None:
            raise ValueError(
                "give either 'customer_ids' or 'records', not both (send two requests)"
            )
        if self.customer_ids is None and self.records is None:
            raise ValueError(
                "give the customers to score: 'customer_ids' (a list of ids in the latest "
                "scored snapshot) or 'records' (a list of feature records)"
            )
        return self


class AtRiskRequest(BaseModel):
    """The top of the latest ranked list, optionally only some segments and tiers."""

    model_config = ConfigDict(extra="forbid", title="AtRiskRequest")

    n: StrictInt | None = Field(
        default=None, ge=1, description="How many customers (default service.at_risk_default_n)."
    )
    segment: list[StrictStr] | None = Field(
        default=None,
        description="Only these segments (one name or a list).",
        examples=[["enterprise"]],
    )
    tier: list[Tier] | None = Field(
        default=None,
        description="Only these tiers (one or a list of high, medium, low).",
        examples=[["high", "medium"]],
    )

    @field_validator("segment", "tier", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Score(BaseModel):
    segment: str
    churn_probability: float
    clv: float
    clv_low: float
    clv_high: float
    value_at_risk: float
    tier: Tier
    reasons: list[str]
    churn_model_version: str
    clv_model_version: str
    scored_as_of: str | None = Field(
        default=None,
        description="Set when this is a real-time rescoring (after an ingested row) newer than "
        "the snapshot: the instant the score is as of.",
    )


class ScoreResult(BaseModel):
    """One requested customer, in request order: a score, or the error that kept it out."""

    customer_id: str | None
    score: Score | None = None
    error: str | None = None


class ScoreResponse(BaseModel):
    results: list[ScoreResult]
    scored: int
    failed: int
    snapshot_as_of: str | None = Field(
        default=None, description="The cutoff of the snapshot the ids were looked up in."
    )
    fallback_models: list[str] = Field(
        default_factory=list,
        description="Models whose champion is a fallback: it did not beat the baselines when "
        "trained (scores usable, not proven better).",
    )


class RankedScore(Score):
    rank: int = Field(description="Position in the whole ranked list (1 = call first).")
    customer_id: str


class AtRiskResponse(BaseModel):
    as_of: str
    matching: int = Field(description="Customers in the ranked list that pass the filters.")
    customers: list[RankedScore]
    fallback_models: list[str] = Field(
        default_factory=list,
        description="Models whose champion is a fallback: it did not beat the baselines when "
        "trained (scores usable, not proven better).",
    )


def invalid(
    title: str, errors: Iterable[tuple[tuple[str | int, ...], str, Any]]
) -> ValidationError:
    """A pydantic ValidationError from (location, message, input) triples, so a check made
    after parsing answers exactly like pydantic's own (400 with `detail[].loc` and `msg`)."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError("invalid_value", "{message}", {"message": message}),
            loc=loc,
            input=value,
        )
        for loc, message, value in errors
    ]
    return ValidationError.from_exception_data(title, details)


def invalid_field(
    title: str, loc: tuple[str | int, ...], message: str, value: Any
) -> ValidationError:
    return invalid(title, [(loc, message, value)])


def score_models(arrays: dict[str, np.ndarray], versions: tuple[str, str]) -> list[Score]:
    n = len(arrays["churn_probability"])
    reasons = zip(*(arrays[c] for c in REASON_COLUMNS), strict=True)
    churn_v, clv_v = versions
    return [
        Score(
            segment=str(arrays["segment"][i]),
            churn_probability=float(arrays["churn_probability"][i]),
            clv=float(arrays["clv"][i]),
            clv_low=float(arrays["clv_low"][i]),
            clv_high=float(arrays["clv_high"][i]),
            value_at_risk=float(arrays["value_at_risk"][i]),
            tier=arrays["tier"][i],
            reasons=[r for r in text if r],
            churn_model_version=churn_v,
            clv_model_version=clv_v,
        )
        for i, text in zip(range(n), reasons, strict=True)
    ]


# -- the loop: ingestion and cases ----------------------------------------------------------------


class IngestRequest(BaseModel):
    """Rows for one table, each a JSON object with the contract's columns. Events: customer_id,
    ts (ISO 8601; UTC when no offset), channel, event_type, and optionally amount, resolved,
    event_id and further columns (invoice_no, stock_code, quantity...). Feedback: customer_id,
    ts, survey (nps, csat, ces), score, and optionally comment, event_id. Each row is checked on
    its own: a bad one is rejected with its reason and the others are accepted."""

    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, Any]] = Field(min_length=1)


class RowError(BaseModel):
    item: int = Field(description="Position of the row in the request (0 = first).")
    field: str | None = Field(description="The column at fault; null for a whole-row problem.")
    reason: str


class MomentDecision(BaseModel):
    row_id: str
    customer_id: str
    reason: str = Field(description="detractor, low_csat, high_effort, complaint, ...")
    outcome: str = Field(
        description="opened, added (to the open case), held_out (control group), not_qualified, "
        "cooldown, over_capacity, excluded, not_scored"
    )
    case_id: int | None


class Rescored(BaseModel):
    customer_id: str
    score: Score


class IngestResponse(BaseModel):
    table: str
    received: int
    stored: int = Field(description="Rows committed to the inbox by this request.")
    duplicates: int = Field(description="Rows the inbox already held (a retried batch).")
    rejected: list[RowError]
    row_ids: list[str | None] = Field(
        description="Each row's id (its event_id, or a hash of its content); null if rejected."
    )
    rescored: list[Rescored]
    moments: list[MomentDecision]


class CaseChange(BaseModel):
    id: int
    case_id: int
    at: str
    actor: str
    from_status: str | None
    to_status: str
    note: str | None
    detail: dict[str, Any] | None


class Case(BaseModel):
    id: int
    kind: str
    customer_id: str
    segment: str | None
    reason: str
    reason_text: str
    trigger: list[dict[str, Any]]
    priority: str
    owner: str
    status: str
    opened_at: str
    due_at: str
    updated_at: str
    first_response_at: str | None
    closed_at: str | None
    resolution: str | None
    note: str | None
    version: int
    moments: int
    escalations: int
    churn_probability: float | None
    clv: float | None
    value_at_risk: float | None
    tier: str | None
    churn_model_version: str | None
    clv_model_version: str | None
    history: list[CaseChange] | None = None


class CaseList(BaseModel):
    matching: int
    cases: list[Case]


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: StrictStr = Field(description="in_progress, resolved, unreachable, declined or expired")
    actor: StrictStr = Field(min_length=1, description="Who makes the change.")
    version: StrictInt | None = Field(
        default=None, description="The version read; a stale one is refused with 409."
    )
    resolution: StrictStr | None = Field(
        default=None, description="Required to close: one of loop.resolution_codes."
    )
    note: StrictStr | None = None
    owner: StrictStr | None = Field(default=None, description="Reassign the case to this owner.")
