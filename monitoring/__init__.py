"""Monitoring: Evidently drift of features and predictions, matured performance, CX KPIs,
outreach effect, and the retrain trigger.

Empty until the monitoring issue lands; see ../shared/DESIGN.md for the plan.
"""
