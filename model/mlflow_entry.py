"""Entry file MLflow loads for Retain models (MLflow "models from code"); Retain never imports it."""

import mlflow

from model.pyfunc import RetainPyfunc

mlflow.models.set_model(RetainPyfunc())
