"""The model artifact: what a trained churn or CLV model is once training is done, and all that
is needed to use one. Training writes it; serving, batch scoring and monitoring read it; it
imports nothing of `training/` or `serving/`.

- `model.schema`: the feature schema and the one frame-to-matrix conversion (`feature_matrix`).
- `model.calibration`: the churn calibrators (log-odds -> probability).
- `model.churn`, `model.clv`: the fitted models; predict and per-row contributions on frames or
  on feature matrices.
- `model.artifact`: a model as plain files (LightGBM text, JSON), saved and loaded.
- `model.pyfunc`: the MLflow pyfunc face of a saved model.
- `model.registry`: the MLflow registry connection as an object (models by name and alias).
- `model.reference`: the champion's reference data that monitoring compares against.
"""
