"""What fitting the churn and CLV boosters shares: the LightGBM defaults, training one booster
with early stopping on a feature matrix (in this process, or with `lightgbm.dask` on a Dask
cluster inside `on_dask`), checking label columns, and the customer hash that splits validation
customers in halves.

Boosters are fitted on `model.schema.feature_matrix` (categoricals as codes on the schema's
levels, declared categorical to LightGBM), the same matrix every prediction uses.

On a cluster every booster the training fits (search trials, churn, CLV candidates and their
quantiles) is fitted data-parallel by `DaskLGBMClassifier` / `DaskLGBMRegressor`, the rows
split over the workers. `lightgbm.dask` has no early stopping, so the booster is fitted for the
full round budget with the early-stopping set as its evaluation set, and the rule
`lightgbm.early_stopping` applies (stop after `early_stopping_rounds` without a better score
on the first metric) is replayed on the recorded scores: the booster is cut at the same best
iteration early stopping would have kept.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from model.schema import FeatureSchema

DEFAULT_PARAMS: dict[str, Any] = {
    # Small, slow trees: on the synthetic world (20k customers) 15 leaves, 100 rows a leaf and a
    # 0.03 rate beat 31/50/0.05 by 0.003 ROC AUC on the evaluation snapshot; churn labels are
    # noisy and a leaf needs many customers before its rate means anything.
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "num_threads": 0,
    "deterministic": True,
    # LightGBM otherwise times row- vs column-wise histograms at start-up and picks the faster,
    # which can differ between runs and break bit-for-bit reproducibility.
    "force_col_wise": True,
    "verbosity": -1,
}


def lgb_params(base: dict[str, Any], user: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    """The defaults, then the objective's `base`, then the user's parameters."""
    return {**DEFAULT_PARAMS, "seed": seed, **base, **(user or {})}


_CLIENT: contextvars.ContextVar[Any] = contextvars.ContextVar("retain_dask_client", default=None)


@contextlib.contextmanager
def on_dask(client: Any) -> Iterator[None]:
    """Within this block `train_booster` fits with `lightgbm.dask` on `client`'s workers (a
    None client changes nothing)."""
    token = _CLIENT.set(client)
    if client is not None:
        _quiet_lightgbm()
    try:
        yield
    finally:
        _CLIENT.reset(token)


def _quiet_lightgbm() -> None:
    """LightGBM's messages in this process through a logger that drops its Info lines:
    `lightgbm.dask` reports the ports it finds for every booster, and a training fits dozens.
    (The workers' native socket chatter goes to their own stdout: see `edge.cluster`.)"""
    import logging

    logger = logging.getLogger("retain.lightgbm")
    logger.setLevel(logging.WARNING)
    if not logger.filters:
        # lightgbm.dask warns on every fit that it replaces n_jobs by the worker's threads.
        logger.addFilter(lambda record: "n_jobs will be ignored" not in record.getMessage())
    lgb.register_logger(logger)


def train_booster(
    params: dict[str, Any],
    schema: FeatureSchema,
    M: np.ndarray,
    y: np.ndarray,
    M_es: np.ndarray,
    y_es: np.ndarray,
    num_boost_round: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    """One booster on feature matrix `M`, early-stopped on `M_es`."""
    client = _CLIENT.get()
    if client is not None:
        return _train_on_dask(
            client, params, schema, M, y, M_es, y_es, num_boost_round, early_stopping_rounds
        )
    train = lgb.Dataset(
        M,
        label=y,
        feature_name=list(schema.columns),
        categorical_feature=schema.categorical,
        params={"max_bin": params.get("max_bin", 255)},
        free_raw_data=True,
    )
    valid = lgb.Dataset(M_es, label=y_es, reference=train)
    return lgb.train(
        params,
        train,
        num_boost_round=num_boost_round,
        valid_sets=[valid],
        valid_names=["early_stopping"],
        callbacks=[
            lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.log_evaluation(0),
        ],
    )


def _chunks(client: Any, a: np.ndarray, held: list[Any]):
    """`a` as a Dask array of row blocks, block i on worker i (in address order), so the same
    rows always reach the same workers in the same order; the blocks' futures go to `held`,
    which must outlive every fit on the array (a released future loses its block)."""
    import dask
    import dask.array as da

    workers = sorted(client.scheduler_info()["workers"])
    n = max(1, min(len(workers), len(a)))
    bounds = np.linspace(0, len(a), n + 1).astype(int)
    blocks = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        # hash=False: content-hashed keys would make a later fit on the same rows share (and
        # lose) blocks this one releases.
        future = client.scatter(a[lo:hi], workers=[workers[i]], hash=False)
        held.append(future)
        blocks.append(da.from_delayed(dask.delayed(future), shape=a[lo:hi].shape, dtype=a.dtype))
    return da.concatenate(blocks, axis=0)


def best_iteration(scores: list[float], patience: int) -> int | None:
    """The 1-based iteration `lightgbm.early_stopping(patience)` keeps for these per-round
    losses (lower is better) once it would stop, or None while it would go on."""
    best_at = 0
    for i, score in enumerate(scores):
        if score < scores[best_at]:
            best_at = i
        elif i - best_at >= patience:
            return best_at + 1
    return None


def validation_loss(params: dict[str, Any], y: np.ndarray, raw: np.ndarray) -> float:
    """The loss of the objective's own metric (LightGBM's definitions) for raw scores `raw`."""
    objective = params.get("objective", "regression")
    eps = 1e-15
    if objective in ("binary", "cross_entropy", "xentropy"):
        p = np.clip(1.0 / (1.0 + np.exp(-raw)), eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    if objective == "tweedie":
        rho = float(params.get("tweedie_variance_power", 1.5))
        a = y * np.exp((1 - rho) * raw) / (1 - rho)
        b = np.exp((2 - rho) * raw) / (2 - rho)
        return float(np.mean(-a + b))
    if objective == "gamma":
        ratio = y / (np.exp(raw) + 1e-9)
        # LightGBM reports this one summed, not averaged; the same here, so the two agree.
        return float(2 * np.sum(ratio - np.log(np.maximum(ratio, eps)) - 1))
    if objective == "quantile":
        alpha = float(params.get("alpha", 0.9))
        d = y - raw
        return float(np.mean(np.where(d >= 0, alpha * d, (alpha - 1) * d)))
    if objective in ("regression", "l2", "mse"):
        return float(np.mean((y - raw) ** 2))
    raise ValueError(f"no early-stopping loss on a cluster for objective {objective!r}")


def _train_on_dask(
    client: Any,
    params: dict[str, Any],
    schema: FeatureSchema,
    M: np.ndarray,
    y: np.ndarray,
    M_es: np.ndarray,
    y_es: np.ndarray,
    num_boost_round: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    """Boost in blocks of `early_stopping_rounds` rounds on the cluster, each block continuing
    the last (`init_model`), scoring every new tree on the whole early-stopping set here, until
    the early-stopping rule says stop or the round budget is spent; the booster is then cut at
    the best iteration. (Each worker would only score its own share of an `eval_set`.)"""
    import lightgbm.dask as lgb_dask

    binary = params.get("objective") in ("binary", "cross_entropy", "xentropy")
    factory = lgb_dask.DaskLGBMClassifier if binary else lgb_dask.DaskLGBMRegressor
    held: list[Any] = []
    X = _chunks(client, M, held)
    label = _chunks(client, np.asarray(y, dtype=np.float64), held)
    y_es = np.asarray(y_es, dtype=np.float64)
    fit_params = {k: v for k, v in params.items() if k not in ("num_threads", "metric")}
    raw = np.zeros(len(M_es))
    losses: list[float] = []
    booster: lgb.Booster | None = None
    best = None
    while best is None and len(losses) < num_boost_round:
        rounds = min(early_stopping_rounds, num_boost_round - len(losses))
        estimator = factory(client=client, n_estimators=rounds, **fit_params)
        estimator.fit(
            X,
            label,
            feature_name=list(schema.columns),
            categorical_feature=schema.categorical,
            init_model=booster,
        )
        booster = estimator.booster_
        grown = booster.current_iteration() - len(losses)
        for it in range(len(losses), booster.current_iteration()):
            raw += booster.predict(M_es, start_iteration=it, num_iteration=1, raw_score=True)
            losses.append(validation_loss(params, y_es, raw))
        best = best_iteration(losses, early_stopping_rounds)
        if grown < rounds:
            break  # LightGBM found no more splits worth making: boosting has ended
    if best is None:
        best = int(np.argmin(losses)) + 1 if losses else 0
    for future in held:
        future.release()
    kept = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    kept.best_iteration = best
    return kept


def labels(y: Any, X: pd.DataFrame, name: str) -> pd.Series:
    """`y` as a Series aligned with `X`, or a ValueError saying what was expected."""
    if isinstance(y, pd.DataFrame):
        raise ValueError(
            f"{name} must be one label column (a Series or 1-d array), got a DataFrame with "
            f"columns {list(y.columns)}; pass e.g. labels['churned'] or labels['future_value']"
        )
    if isinstance(y, pd.Series):
        if len(y) == len(X) and not y.index.equals(X.index):
            raise ValueError(
                f"{name} has a different index from its features; align them (or pass "
                "y.to_numpy() if the rows are already in the same order)"
            )
    else:
        y = pd.Series(np.asarray(y), index=X.index if len(np.asarray(y)) == len(X) else None)
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-d")
    if len(y) != len(X):
        raise ValueError(f"{name} has {len(y)} labels but its features have {len(X)} rows")
    return y


def binary_labels(y: Any, X: pd.DataFrame, name: str) -> np.ndarray:
    y = labels(y, X, name)
    if is_bool_dtype(y.dtype) and not y.isna().any():
        return y.to_numpy(dtype=np.float64)
    if is_numeric_dtype(y.dtype) and not is_bool_dtype(y.dtype):
        values = y.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isin(values, (0.0, 1.0)).all():
            return values
    raise ValueError(
        f"{name} must be the churn label: boolean (or 0/1) with no missing values; got dtype "
        f"{y.dtype} with values such as {y.drop_duplicates().head(5).tolist()}"
    )


def nonnegative_labels(y: Any, X: pd.DataFrame, name: str) -> np.ndarray:
    y = labels(y, X, name)
    if is_bool_dtype(y.dtype) or not is_numeric_dtype(y.dtype):
        raise ValueError(
            f"{name} must be future value: numeric and >= 0; got dtype {y.dtype} (is it the "
            "churn label?)"
        )
    values = y.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(
            f"{name} must be finite and >= 0; found {int((~np.isfinite(values)).sum())} "
            f"missing/infinite and {int((values < 0).sum())} negative values"
        )
    return values


def customer_hash(index: pd.Index) -> np.ndarray:
    """A fixed-key hash of the customer id: the same customer always lands in the same half, in
    every run and on every machine, and a customer's rows are never split across halves."""
    return pd.util.hash_array(index.astype(str).to_numpy(dtype=object))
