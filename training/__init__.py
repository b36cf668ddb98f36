"""Training: training frames over several cutoffs, the LightGBM churn and CLV models, evaluation
against baselines, MLflow tracking, and the registry with its promotion gate.

Empty until the training issue lands; see ../shared/DESIGN.md for the plan.
"""
