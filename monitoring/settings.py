"""`MonitoringSettings`: the thresholds and sizes of the monitoring reports and the retrain trigger.

It is defined in `configs` (as `Settings.monitoring`, validated from the `monitoring:` block of
`configs/default.yaml`) and re-exported here; every monitoring function takes it as an explicit
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
- Ageing is not drift. The reference sample is redrawn to the current sample's mix of
  `age_feature` (tenure, in `age_bins` quantile bins; only ages both sides hold) before anything
  is compared, and the features that grow with the book's age by construction
  (`ageing_features`: lifetime totals and counts) are tested and shown but not counted. Without
  the matching, a healthy book that got older showed 0.15-0.20 of its columns drifted (tenure,
  days since rare events, 365-day counts) and the old 0.25 share threshold missed drifted
  worlds whose champion was trained inside the drift (0.13-0.15 of columns, issue 17).
- `drift_share_threshold` 0.08 and `weighted_drift_threshold` 0.06, measured with the matching:
  the test world of `tests/monitoring/conftest.py` (5,000 customers, seed 1, features on the day
  drift starts against 130 days later, equal weights) has a share of 0.069 without drift and
  0.215 with it; 20,000-customer worlds trained, scored and monitored on the day after their
  last event (`benchmarks/trigger.py`, seeds in benchmarks/RESULTS.md) have shares 0.021-0.036
  healthy against 0.100-0.121 drifted, and importance-weighted drift 0.023-0.039 against
  0.090-0.121. Each threshold sits between the two groups.
- `prediction_drift_threshold` 0.3: over the twenty 20,000-customer worlds (seeds 0-9) healthy
  ones reached 0.046-0.195 on churn probability (it moves with the season and with each
  training's calibration, even at matched ages) and drifted ones 0.083-0.328, so it cannot tell
  the two apart; 0.3 keeps it as a backstop for a large move (at 0.15 seed 6's healthy world
  raised a false alarm).
"""

from __future__ import annotations

from configs import CATEGORICAL_STATTESTS, NUMERICAL_STATTESTS, MonitoringSettings

__all__ = ["CATEGORICAL_STATTESTS", "NUMERICAL_STATTESTS", "MonitoringSettings"]
