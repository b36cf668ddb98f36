"""Models as plain files (`model.artifact`) and as MLflow pyfunc models in the registry
(`model.pyfunc` through `training.tracking.log_model`): what is loaded back predicts exactly what
was trained, and a damaged model folder is a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from model.artifact import load_model, save_model
from model.churn import ChurnModel
from model.clv import ClvModel
from model.pyfunc import input_example
from model.registry import CHAMPION, Registry
from training.churn import ChurnTrainer
from training.clv import ClvTrainer
from training.tracking import log_model

FAST = {"num_threads": 1}


def compound_poisson_value(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Value as a sum of a Poisson number of gamma-sized purchases, whose mean rises with `x`:
    the shape Tweedie models describe, so a Tweedie candidate wins (the synthetic world's model
    in conftest is two-part), and both CLV layouts are saved and loaded."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(size=n)
    counts = rng.poisson(np.exp(0.8 * x))
    value = np.bincount(
        np.repeat(np.arange(n), counts), weights=rng.gamma(2.0, 20.0, counts.sum()), minlength=n
    )
    X = pd.DataFrame(
        {"x": x, "z": z, "tier": pd.Categorical(rng.choice(["a", "b"], n))},
        index=pd.Index([f"t{seed}-{i:05d}" for i in range(n)], name="customer_id"),
    )
    return X, pd.Series(value, index=X.index)


@pytest.fixture(scope="module")
def tweedie_clv_model():
    X, y = compound_poisson_value(1500, seed=1)
    Xv, yv = compound_poisson_value(800, seed=2)
    model = ClvTrainer(FAST, num_boost_round=60, early_stopping_rounds=10).fit(X, y, Xv, yv)
    assert model.objective.startswith("tweedie"), (
        f"compound-Poisson data should favour a Tweedie candidate, got {model.objective}; "
        "change the data so this test still covers the Tweedie layout"
    )
    return model, Xv


# --------------------------------------------------------------------------- persist


def test_churn_model_round_trip(tmp_path, fitted_churn_model, synthetic_split):
    model, X = fitted_churn_model, synthetic_split.X_eval
    folder = save_model(model, tmp_path / "churn")
    # Plain files only: booster text and JSON, no pickle.
    assert sorted(p.name for p in folder.iterdir()) == ["churn.txt", "meta.json"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["kind"] == "churn" and meta["calibrator"]["kind"] == model.calibrator.kind

    loaded = load_model(folder)
    assert isinstance(loaded, ChurnModel)
    assert loaded.schema == model.schema
    assert loaded.best_iteration == model.best_iteration
    assert loaded.calibrator.kind == model.calibrator.kind
    assert loaded.calibration == model.calibration
    np.testing.assert_array_equal(loaded.raw_score(X), model.raw_score(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    some = X.sample(400, random_state=0)  # TreeSHAP is slow-ish; a sample is plenty
    pd.testing.assert_frame_equal(loaded.contributions(some), model.contributions(some))


def _assert_clv_round_trip(model: ClvModel, X: pd.DataFrame, folder: Path) -> None:
    save_model(model, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{name}.txt" for name in model.boosters] + ["meta.json"]
    )
    loaded = load_model(folder)
    assert isinstance(loaded, ClvModel)
    assert loaded.objective == model.objective
    assert loaded.interval == model.interval
    assert loaded.schema == model.schema
    assert loaded.best_iteration == model.best_iteration
    assert loaded.validation == model.validation
    assert loaded.interval_validation == model.interval_validation
    pd.testing.assert_frame_equal(loaded.predict(X), model.predict(X), check_exact=True)
    some = X.sample(min(len(X), 400), random_state=0)
    pd.testing.assert_frame_equal(loaded.contributions(some), model.contributions(some))


def test_clv_model_round_trip(tmp_path, fitted_clv_model, synthetic_split):
    _assert_clv_round_trip(fitted_clv_model, synthetic_split.X_eval, tmp_path / "clv")


def test_tweedie_clv_model_round_trip(tmp_path, tweedie_clv_model):
    model, X = tweedie_clv_model
    assert {"tweedie", "low", "high"} == set(model.boosters)
    _assert_clv_round_trip(model, X, tmp_path / "clv")


def test_saving_something_else_or_an_unfitted_model_is_an_error(tmp_path):
    with pytest.raises(TypeError, match="cannot save dict: expected ChurnModel or ClvModel"):
        save_model({}, tmp_path / "x")
    # An unfitted model is a trainer, not a model: there is nothing to save yet.
    with pytest.raises(
        TypeError, match="cannot save ChurnTrainer: expected ChurnModel or ClvModel"
    ):
        save_model(ChurnTrainer(), tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.fixture(scope="module")
def saved_churn_folder(tmp_path_factory, fitted_churn_model):
    return save_model(fitted_churn_model, tmp_path_factory.mktemp("saved") / "churn")


def _meta_without(key):
    def edit(meta):
        meta.pop(key)
        return json.dumps(meta)

    return edit


def _meta_with(**changes):
    def edit(meta):
        meta.update(changes)
        return json.dumps(meta)

    return edit


@pytest.mark.parametrize(
    "damage, words",
    [
        ("delete meta.json", r"not a saved Retain model \(meta.json unreadable"),
        (lambda meta: json.dumps(meta)[:80], r"not a saved Retain model \(meta.json unreadable"),
        (lambda meta: "", r"meta.json unreadable"),
        (lambda meta: "[1, 2]", "meta.json is corrupted: expected a JSON object, got list"),
        (_meta_with(format=99), "model format 99 is not supported"),
        (_meta_with(kind="forecast"), "kind 'forecast' is neither 'churn' nor 'clv'"),
        (_meta_without("schema"), "meta.json has no entry 'schema'"),
        (_meta_without("calibrator"), "meta.json has no entry 'calibrator'"),
        (_meta_with(schema={"columns": ["a"]}), "a feature schema needs 'columns'"),
        (_meta_with(calibrator={"kind": "magic"}), "unknown calibrator kind 'magic'"),
        ("delete churn.txt", r"booster files \['churn.txt'\] listed in meta.json do not exist"),
        ("garble churn.txt", "not a loadable Retain churn model"),
    ],
    ids=[
        "missing",
        "truncated",
        "empty",
        "not-an-object",
        "format",
        "kind",
        "no-schema",
        "no-calibrator",
        "bad-schema",
        "bad-calibrator",
        "missing-booster",
        "garbled-booster",
    ],
)
def test_a_damaged_model_folder_is_a_clear_error(tmp_path, saved_churn_folder, damage, words):
    folder = tmp_path / "churn"
    shutil.copytree(saved_churn_folder, folder)
    meta_path = folder / "meta.json"
    if damage == "delete meta.json":
        meta_path.unlink()
    elif damage == "delete churn.txt":
        (folder / "churn.txt").unlink()
    elif damage == "garble churn.txt":
        (folder / "churn.txt").write_text("this is not a LightGBM model\n")
    else:
        meta_path.write_text(damage(json.loads(meta_path.read_text())))
    with pytest.raises(ValueError, match=words) as info:
        load_model(folder)
    assert str(folder) in str(info.value)  # the error says where


# --------------------------------------------------------------------------- MLflow pyfunc


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory, fitted_churn_model, fitted_clv_model, synthetic_split):
    """A temporary SQLite MLflow store holding both models logged in one run, registered as
    `churn` and `clv` version 1 with alias champion. The global MLflow URIs (and the
    environment variables MLflow sets with them) are put back afterwards."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        for var in (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_REGISTRY_URI",
            "MLFLOW_DISABLE_TELEMETRY",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
        ):
            mp.delenv(var, raising=False)  # remembered and restored on exit
        registry = Registry(uri)
        client = registry.client
        experiment_id = registry.ensure_experiment("retain-tests")
        models = {"churn": fitted_churn_model, "clv": fitted_clv_model}
        # The tests below use MLflow's fluent API, as an application loading the models would.
        with registry.active():
            with mlflow.start_run(experiment_id=experiment_id) as run:
                infos = {
                    kind: log_model(kind, model, synthetic_split.X_eval, root / "staging")
                    for kind, model in models.items()
                }
            for kind, info in infos.items():
                client.set_registered_model_alias(
                    kind, CHAMPION, str(info.registered_model_version)
                )
            yield {"uri": uri, "client": client, "run_id": run.info.run_id, "infos": infos}


def test_models_are_registered_with_a_signature(champion_store, fitted_churn_model):
    client = champion_store["client"]
    for kind in ("churn", "clv"):
        version = client.get_model_version_by_alias(kind, CHAMPION)
        assert str(version.version) == "1" and version.run_id == champion_store["run_id"]
    info = mlflow.models.get_model_info(f"models:/churn@{CHAMPION}")
    assert info.signature.inputs.input_names() == list(fitted_churn_model.schema.columns)
    assert info.signature.outputs.input_names() == ["churn_probability"]
    clv_info = mlflow.models.get_model_info(f"models:/clv@{CHAMPION}")
    assert clv_info.signature.outputs.input_names() == ["clv", "clv_low", "clv_high"]


def test_churn_champion_predicts_the_trained_probabilities(
    champion_store, fitted_churn_model, synthetic_split
):
    X = synthetic_split.X_eval
    loaded = mlflow.pyfunc.load_model(f"models:/churn@{CHAMPION}")
    expected = fitted_churn_model.predict_proba(X)
    got = np.asarray(loaded.predict(X))
    assert got.shape == (len(X),)
    np.testing.assert_array_equal(got, expected)
    # Categoricals as plain strings (None for missing), the form applications send and the
    # registered input example has: the same probabilities, row for row.
    as_sent = input_example(X, n=len(X))
    assert all(as_sent[c].dtype == object for c in fitted_churn_model.schema.categories)
    np.testing.assert_array_equal(np.asarray(loaded.predict(as_sent)), expected)
    # The wrapped model is the churn model itself.
    assert loaded.unwrap_python_model().kind == "churn"


def test_clv_champion_predicts_value_and_interval(
    champion_store, fitted_clv_model, synthetic_split
):
    X = synthetic_split.X_eval
    loaded = mlflow.pyfunc.load_model(f"models:/clv@{CHAMPION}")
    expected = fitted_clv_model.predict(X).reset_index(drop=True)
    got = loaded.predict(input_example(X, n=len(X)))
    assert isinstance(got, pd.DataFrame)
    assert list(got.columns) == ["clv", "clv_low", "clv_high"]
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    pd.testing.assert_frame_equal(loaded.predict(X), expected, check_exact=True)
    assert loaded.unwrap_python_model().kind == "clv"
