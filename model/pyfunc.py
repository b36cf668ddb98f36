"""The MLflow pyfunc face of a Retain model, so `mlflow.pyfunc.load_model("models:/churn@champion")`
returns churn probabilities (and `models:/clv@champion` clv, clv_low, clv_high) for a features
frame. The model itself travels as plain files (`model.artifact`), not a pickle.

MLflow loads `model/mlflow_entry.py` (models from code), which builds `RetainPyfunc`; the
saved model's own metadata says whether it is the churn or the CLV model.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

ENTRY_FILE = Path(__file__).with_name("mlflow_entry.py")


class RetainPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from model.artifact import load_model
        from model.churn import ChurnModel

        self.model = load_model(context.artifacts["model"])
        self.kind = "churn" if isinstance(self.model, ChurnModel) else "clv"

    def predict(self, context, model_input: pd.DataFrame, params=None):
        X = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if self.kind == "churn":
            return np.asarray(self.model.predict_proba(X))
        return self.model.predict(X).reset_index(drop=True)


def signature_for(kind: str, X: pd.DataFrame):
    """Model signature: feature columns in order; categoricals declared `Any` because MLflow's
    schema has no categorical type (strings and pandas categoricals are both accepted and mapped
    to the training categories by `feature_matrix`). The BTYD features are optional: a frame
    from `retain features` lacks them (they need the fitted BG/NBD parameters, which `retain
    score` applies), and without them the model predicts from the booster alone."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from model.btyd import BTYD_COLUMNS

    inputs = []
    for col in X.columns:
        required = col not in BTYD_COLUMNS
        if isinstance(X[col].dtype, pd.CategoricalDtype) or X[col].dtype == object:
            inputs.append(ColSpec(AnyType(), col, required=required))
        else:
            inputs.append(ColSpec("double", col, required=required))
    if kind == "churn":
        outputs = Schema([ColSpec("double", "churn_probability")])
    else:
        outputs = Schema([ColSpec("double", c) for c in ("clv", "clv_low", "clv_high")])
    return ModelSignature(inputs=Schema(inputs), outputs=outputs)


def input_example(X: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """A few rows with categoricals as strings, the form applications will send."""
    head = X.head(n).reset_index(drop=True)
    for col in head.columns:
        if isinstance(head[col].dtype, pd.CategoricalDtype):
            head[col] = head[col].astype(object).where(head[col].notna(), None)
    return head.astype({c: "float64" for c in head.columns if head[c].dtype != object})
