"""`MonitoringSettings`: the thresholds and sizes of the monitoring reports and the retrain trigger.

It lives here until it moves into `configs` (as `Settings.monitoring`, validated from the
`monitoring:` block of `configs/default.yaml`); every monitoring function takes it as an explicit
argument and falls back to these defaults when given None.

Why the drift defaults are what they are (measured on synthetic worlds, see
`tests/monitoring/test_drift.py` and the module docstring of `monitoring.drift`):

- one distance per column type whatever the sample size: normalised Wasserstein distance (the
  distance over the reference's standard deviation) for every numerical column, Jensen-Shannon
  distance for categorical ones (and numerical ones constant in the reference), both flagged at
  0.1. Evidently's automatic choice would switch to p-value tests (K-S, chi-square) for columns
  with at most 1,000 non-missing values, and a p-value flags ever smaller differences as the
  sample grows, so the share of drifted columns would depend on the sample size. Evidently also
  tests numerical columns with at most 5 distinct values (weekly counts of rare events) with
  Jensen-Shannon, which barely reacts to a doubling of a rare event: with that rule the drifted
  worlds below reached only 0.24-0.32 of their columns against 0.15-0.19 without drift; with
  Wasserstein on every numerical column, 0.31-0.44 against 0.15-0.20.
- `min_column_values` 300: a column with fewer non-missing values on either side (a trend of a
  rare survey, a share of unresolved complaints last week) is skipped and reported, not tested.
  Below a few hundred values the distance between two samples of one distribution is itself
  near 0.1 (a CES trend with 6 values scored 0.7 on Jensen-Shannon in a world without drift).
- `drift_share_threshold` 0.25: on nine pairs of synthetic worlds (5,000 customers, seeds 1-7,
  11 and 13) comparing features on the day drift starts (2025-08-23) with features 130 days
  later (2025-12-31), 0.15-0.20 of the tested columns drift in the world *without* drift (the
  book ages: tenure, days since rare events, lifetime totals and 365-day counts move as the
  population's tenure grows) and 0.31-0.44 in the world with drift (two pairs of 20,000
  customers, seeds 5 and 8: 0.15-0.17 against 0.36-0.37). 0.25 sits between the two; the 0.3
  first proposed would leave one drifted world only one or two columns above the line.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Evidently stattests allowed per column type: distances only (drift when the distance is at or
# above the threshold), so scores rank columns by how far they moved whatever the sample size.
# The categorical test also serves numerical columns constant in the reference, so each one
# must accept numerical columns too.
NUMERICAL_STATTESTS = ("wasserstein", "jensenshannon", "psi", "hellinger", "kl_div", "ed")
CATEGORICAL_STATTESTS = ("jensenshannon", "psi", "hellinger", "kl_div")


class MonitoringSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Drift: both sides are sampled to at most this many rows (seeded, by a hash of customer_id).
    sample_size: int = Field(default=50_000, ge=100)
    seed: int = 0
    # Share of tested feature columns that must drift before drift alone makes a retrain due.
    drift_share_threshold: float = Field(default=0.25, gt=0.0, le=1.0)
    # Per-column test: a column drifts when its distance is at or above stattest_threshold.
    numerical_stattest: str = "wasserstein"
    categorical_stattest: str = "jensenshannon"
    stattest_threshold: float = Field(default=0.1, gt=0.0)
    # Columns with fewer non-missing values than this on either side are skipped, not tested.
    min_column_values: int = Field(default=300, ge=1)

    # Matured performance: floors under which a retrain is due, and the least matured rows needed.
    min_roc_auc: float = Field(default=0.65, ge=0.0, le=1.0)
    min_gini: float = Field(default=0.3, ge=-1.0, le=1.0)
    min_matured_rows: int = Field(default=200, ge=1)

    # CX KPIs: survey and churn windows (days before as_of); the top CLV share called high impact.
    kpi_windows_days: tuple[int, ...] = Field(default=(30, 90), min_length=1)
    high_impact_share: float = Field(default=0.1, gt=0.0, lt=1.0)

    # Outreach effect: matured outcomes needed in each of contact and control before an estimate,
    # and the confidence level of its interval.
    min_matured_per_group: int = Field(default=200, ge=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)

    # MLflow experiment the monitoring runs and their reports are logged to (by the CLI).
    experiment: str = Field(default="retain-monitoring", min_length=1)

    @field_validator("kpi_windows_days")
    @classmethod
    def _positive_sorted_unique(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(w <= 0 for w in v):
            raise ValueError(f"every window must be a positive number of days, got {list(v)}")
        if len(set(v)) != len(v):
            raise ValueError(f"windows must be distinct, got {list(v)}")
        return tuple(sorted(v))

    @field_validator("numerical_stattest")
    @classmethod
    def _numerical(cls, v: str) -> str:
        if v not in NUMERICAL_STATTESTS:
            raise ValueError(f"must be one of {list(NUMERICAL_STATTESTS)}, got {v!r}")
        return v

    @field_validator("categorical_stattest")
    @classmethod
    def _categorical(cls, v: str) -> str:
        if v not in CATEGORICAL_STATTESTS:
            raise ValueError(f"must be one of {list(CATEGORICAL_STATTESTS)}, got {v!r}")
        return v
