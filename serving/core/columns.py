"""The columns of a ranked at-risk list, in order: one definition for batch scoring, the HTTP
service, the outreach outbox and its CSV file drop (kept free of model imports, so outreach and
its dispatchers load without LightGBM)."""

from __future__ import annotations

REASON_COLUMNS: tuple[str, ...] = ("reason_1", "reason_2", "reason_3")
SCORE_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "segment",
    "churn_probability",
    "clv",
    "clv_low",
    "clv_high",
    "value_at_risk",
    "tier",
    *REASON_COLUMNS,
    "churn_model_version",
    "clv_model_version",
)
