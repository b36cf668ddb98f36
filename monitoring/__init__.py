"""Monitoring: drift of features and predictions, matured performance, CX KPIs, the outreach
effect, and the retrain trigger. Pure functions of DataFrames and an explicit `as_of`; the CLI
reads the inputs (champion reference from MLflow, scores, outbox history) and writes the reports.

- `settings.MonitoringSettings`: thresholds and sizes (`Settings.monitoring`, defined in `configs`).
- `drift.detect_drift`: Evidently stattests per feature column and for `churn_probability` and
  `clv`, on seeded samples; `DriftResult.save_html` writes Evidently's drift report.
- `outcomes.matured_labels`: labels for past scores or outreach selections whose horizon has
  matured by `as_of`.
- `performance.matured_performance`: ROC AUC, Brier, ECE, calibration, CLV Gini and Spearman of
  matured scores next to the training metrics; `save_html` writes Evidently's presets.
- `kpis.cx_kpis`: NPS, CSAT, CES, churn rate, CLV and value at risk per window and group, tidy.
- `effect.outreach_effect`: churn of contacted against control customers with a Newcombe
  interval, or "not enough data yet".
- `report.build_summary` (retrain_due and its reasons) and `report.render_report` (HTML).
- `cli`: `retain monitor` (reports, MLflow run, exit 3 when a retrain is due) and `retain retrain`
  (train_and_register under a lock file).

Nothing here reads the clock or imports Evidently at import time.
"""
