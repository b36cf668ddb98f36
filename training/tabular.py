"""Train the churn model on a one-row-per-customer export with a label (e.g. the IBM Telco file).

A static table has no event history, so there are no cutoffs to replay and no CLV label: the
columns are the features as they are, the label is whatever the export calls churn, and quality
is measured by stratified k-fold cross-validation instead of a later snapshot.

    load_table(path, id_column, label)     -> LabelledTable (X with the id as index, y, what changed)
    prepare_table(frame, id_column, label) -> the same from a DataFrame (label optional: scoring)
    cross_validate(X, y, settings)         -> CrossValidation: pooled out-of-fold metrics, folds

Preparation: text columns whose values are all numbers once blanks are removed become float
(blanks -> NaN; Telco's TotalCharges), other text columns become pandas categoricals, numbers
and booleans become float64, and a text column with a distinct value on (nearly) every row is
dropped as a second id. Rows are sorted by id, so folds do not depend on the file's row order.

Evaluation: `folds` stratified folds (seed `training.seed`). In each, the training folds are split
again, stratified, into a fitting part and a validation part (`INNER_VALIDATION` of the rows;
early stopping and calibration, as `ChurnTrainer` expects); the held-out fold is predicted. The
logistic baseline gets all the training folds. The final model is fitted the same way on every row.

MLflow (`training.tabular_run.train_labelled_table`): one run in the experiment `<training.experiment>-static` (default
`retain-training-static`), kept apart from the time-based runs because its metrics are
cross-validated on another kind of data and the runs should not be compared side by side. The
model is registered as `churn` (alias `challenger`) and promoted to `champion` only if its CV
gate metric (`training.gate_churn`, ROC AUC by default) beats the logistic baseline and the
current champion. A champion with other feature columns is never replaced automatically: the
reason says so and `retain promote` does it by hand. A champion evaluated by the same CV on the
same data is compared through its recorded CV metric; otherwise it is re-scored on this table
(rows it was trained on favour it, so the comparison errs towards keeping it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.model_selection import StratifiedKFold, train_test_split

from configs import Settings
from features.contract import FALSE_WORDS, TRUE_WORDS
from model.churn import ChurnModel
from training.baselines import LogisticChurnBaseline, PlainLightgbmBaseline
from training.blend import choose_churn_stack
from training.boosting import customer_hash
from training.churn import ChurnTrainer
from training.leakage import Finding, check_leakage, separating_features
from training.metrics import churn_metrics

FOLDS = 5
# Share of the training rows that only validate (early stopping and calibration).
INNER_VALIDATION = 0.2
_ID_LIKE_SHARE, _ID_LIKE_MIN = 0.5, 50  # a text column with more distinct values than this is an id


@dataclass
class LabelledTable:
    X: pd.DataFrame  # features, indexed by the id column, sorted by it
    y: pd.Series | None  # 0/1 churn label, same index (None when prepared for scoring)
    numeric_from_text: dict[str, int] = field(default_factory=dict)  # column -> blanks made NaN
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why
    label_values: dict[str, int] = field(default_factory=dict)  # label as written -> 0/1
    digest: str = ""  # sha256 of the table's contents as read
    source: str = ""


def _digest(frame: pd.DataFrame) -> str:
    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _binary_label(s: pd.Series, label: str) -> tuple[pd.Series, dict[str, int]]:
    if s.isna().any():
        raise ValueError(f"label column '{label}' has {int(s.isna().sum())} missing values")
    if ptypes.is_bool_dtype(s.dtype):
        text = s.map({True: "true", False: "false"})
    elif ptypes.is_numeric_dtype(s.dtype):
        text = s.map(lambda v: f"{float(v):g}")
    else:
        text = s.astype(str).str.strip().str.lower()
    codes = text.map(lambda v: 1 if v in TRUE_WORDS else 0 if v in FALSE_WORDS else -1)
    if (codes < 0).any() or codes.nunique() < 2:
        seen = s[codes < 0].drop_duplicates().head(5).tolist() or s.drop_duplicates().tolist()
        raise ValueError(
            f"label column '{label}' must be binary with both classes (Yes/No, True/False or 1/0, "
            f"any case); found values such as {seen}"
        )
    first = ~s.duplicated()
    mapping = dict(zip(s[first].astype(str), codes[first].astype(int), strict=True))
    return codes.astype(np.int64), dict(sorted(mapping.items()))


def _feature(s: pd.Series, col: str, n: int) -> tuple[Any, int | None, str | None]:
    """(converted column, blanks made NaN if it was numeric text, reason if dropped)."""
    if ptypes.is_bool_dtype(s.dtype) or ptypes.is_numeric_dtype(s.dtype):
        return s.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan), None, None
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if not (ptypes.is_object_dtype(s.dtype) or ptypes.is_string_dtype(s.dtype)):
        raise ValueError(
            f"column '{col}' has dtype {s.dtype}; a static table's features must be numbers, "
            "booleans or text (turn dates into numbers such as days since, or drop the column)"
        )
    text = s.astype("string").str.strip()
    text = text.replace("", pd.NA)
    present = text.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():
        blanks = int(s.notna().sum() - len(present))
        values = pd.to_numeric(text, errors="coerce")
        return values.to_numpy(dtype=np.float64, na_value=np.nan), blanks, None
    distinct = present.nunique()
    if distinct > max(_ID_LIKE_MIN, _ID_LIKE_SHARE * n):
        return None, None, f"text with {distinct:,} distinct values in {n:,} rows (an id?)"
    return pd.Categorical(text.astype(object).where(text.notna(), None)), None, None


def prepare_table(frame: pd.DataFrame, id_column: str, label: str | None = None) -> LabelledTable:
    """Features (and the 0/1 label when `label` is given) from a one-row-per-customer frame.
    The frame is not modified. Raises ValueError naming the column for a missing id or label
    column, missing or repeated ids, or a label that is not binary."""
    for role, col in (("id", id_column), ("label", label)):
        if col is not None and col not in frame.columns:
            raise ValueError(
                f"{role} column '{col}' is not in the table; it has {list(frame.columns)}"
            )
    ids = frame[id_column].astype("string").str.strip()
    if ids.isna().any() or (ids == "").any():
        raise ValueError(
            f"id column '{id_column}' has {int((ids.isna() | (ids == '')).sum())} missing ids"
        )
    if ids.duplicated().any():
        repeated = ids[ids.duplicated()].drop_duplicates()
        raise ValueError(
            f"id column '{id_column}' has {len(repeated)} repeated ids (e.g. "
            f"{repeated.head(5).tolist()}); a static table needs one row per customer"
        )
    order = np.argsort(ids.to_numpy(dtype=object), kind="stable")
    rows = frame.iloc[order]
    index = pd.Index(ids.iloc[order].to_numpy(dtype=object), name=id_column)
    features, numeric_from_text, dropped = {}, {}, {}
    for col in frame.columns:
        if col in (id_column, label):
            continue
        values, blanks, reason = _feature(rows[col], str(col), len(frame))
        if reason is not None:
            dropped[str(col)] = reason
            continue
        features[col] = values
        if blanks is not None:
            numeric_from_text[str(col)] = blanks
    if not features:
        raise ValueError(f"the table has no feature columns besides '{id_column}' and '{label}'")
    X = pd.DataFrame(features, index=index)
    y, label_values = None, {}
    if label is not None:
        codes, label_values = _binary_label(rows[label], label)
        y = pd.Series(codes.to_numpy(), index=index, name="churned")
    return LabelledTable(X, y, numeric_from_text, dropped, label_values)


def load_table(path: str | Path, id_column: str, label: str) -> LabelledTable:
    """`prepare_table` on a CSV (optionally compressed) or Parquet file, with its content digest."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot read table {path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif ".csv" in suffixes or ".tsv" in suffixes:
            sep = "\t" if ".tsv" in suffixes else ","
            frame = pd.read_csv(path, sep=sep, dtype={id_column: str}, low_memory=False)
        else:
            raise ValueError("unsupported file type; expected .csv (maybe .gz), .tsv or .parquet")
    except Exception as exc:
        raise ValueError(f"cannot read table {path}: {exc}") from exc
    table = prepare_table(frame, id_column, label)
    table.digest, table.source = _digest(frame), str(path.resolve())
    return table


# --------------------------------------------------------------------------- evaluation


@dataclass
class CrossValidation:
    folds: int
    model: dict[str, float]  # pooled out-of-fold churn_metrics
    baselines: dict[str, dict[str, float]]  # the same for each baseline (logistic, plain LightGBM)
    per_fold: pd.DataFrame  # one row per fold: n, roc_auc, ece, logistic_roc_auc, best_iteration
    predictions: pd.DataFrame  # per customer: churned, fold, churn_probability, churn_logistic
    allowed_leaks: list[Finding] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Flat `churn.cv.*` metrics for MLflow: pooled, per-fold mean/std and per fold."""
        out = {f"churn.cv.{k}": v for k, v in self.model.items()}
        for name, m in self.baselines.items():
            out.update({f"churn.cv.baseline.{name}.{k}": v for k, v in m.items()})
        for col in ("roc_auc", "ece", "logistic_roc_auc"):
            out[f"churn.cv.{col}_fold_mean"] = float(self.per_fold[col].mean())
            out[f"churn.cv.{col}_fold_std"] = float(self.per_fold[col].std(ddof=1))
        for fold, row in self.per_fold.iterrows():
            out.update({f"churn.cv.fold_{fold}.{k}": float(v) for k, v in row.items()})
        return {k: float(v) for k, v in out.items() if np.isfinite(float(v))}


def _inner_split(y: pd.Series, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions to fit on and to validate on, stratified by the label (one row per customer,
    so the parts are customer-disjoint)."""
    pos = np.arange(len(y))
    fit, valid = train_test_split(pos, test_size=INNER_VALIDATION, stratify=y, random_state=seed)
    return np.sort(fit), np.sort(valid)


# Tree shapes tried on a one-row-per-customer table, unless the user sets one in churn_params.
# Such tables (thousands of rows, a few dozen columns) are mostly additive in their features;
# the time-based models' 15 leaves over-fit interactions there (IBM Telco, 5-fold CV: 15 leaves
# 0.8484 ROC AUC, stumps 0.8507).
SHAPES: dict[str, dict[str, float | int]] = {
    "stumps": {"num_leaves": 2, "min_data_in_leaf": 50, "learning_rate": 0.05},
    "leaves_4": {"num_leaves": 4, "min_data_in_leaf": 50, "learning_rate": 0.02},
    "default": {},
}
_SHAPE_KEYS = {"num_leaves", "min_data_in_leaf", "learning_rate", "max_depth"}


def fit_model(X: pd.DataFrame, y: pd.Series, settings: Settings) -> ChurnModel:
    """A `ChurnModel` on these rows, early-stopped and calibrated on a stratified inner part:
    the tree shape of lowest calibrated validation log-loss among `SHAPES` (unless
    `churn_params` fixes one), then the stack with a logistic regression if the validation
    part prefers it (`training.blend.choose_churn_stack`)."""
    t = settings.training
    fit, valid = _inner_split(y, t.seed)
    parts = (X.iloc[fit], y.iloc[fit], X.iloc[valid], y.iloc[valid])
    common = {
        "num_boost_round": t.num_boost_round,
        "early_stopping_rounds": t.early_stopping_rounds,
        "seed": t.seed,
    }
    shapes = {"configured": {}} if _SHAPE_KEYS & set(t.churn_params) else SHAPES
    best: tuple[float, ChurnModel] | None = None
    for shape in shapes.values():
        model = ChurnTrainer({**shape, **t.churn_params}, **common).fit(*parts)
        loss = model.calibration.get(model.calibrator.kind, {}).get("log_loss", float("inf"))
        if best is None or loss < best[0]:
            best = (loss, model)
    model = best[1]
    if not t.classic_models:
        return model
    M_fit, M_valid = model.matrix(parts[0]), model.matrix(parts[2])
    model, _ = choose_churn_stack(
        model,
        M_fit,
        parts[1].to_numpy(),
        M_valid,
        parts[3].to_numpy(),
        customer_hash(parts[2].index) & 1,
    )
    return model


def guard_leakage(X: pd.DataFrame, y: pd.Series, settings: Settings) -> list[Finding]:
    """Stop (LeakageError) on a column that alone separates the label, unless allowed."""
    t = settings.training
    findings = separating_features(X, y.to_numpy(), t.leakage_auc_threshold)
    return check_leakage(findings, t.allow_leaky_features)


def cross_validate(
    X: pd.DataFrame,
    y: pd.Series,
    settings: Settings,
    *,
    folds: int = FOLDS,
    progress: Callable[[str], None] = lambda _: None,
) -> CrossValidation:
    """Leakage guard, then stratified k-fold out-of-fold predictions of the model and the
    logistic baseline. Pure computation, deterministic for a given seed."""
    allowed = guard_leakage(X, y, settings)
    if y.value_counts().min() < folds:
        raise ValueError(f"each class needs at least {folds} rows for {folds}-fold CV")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=settings.training.seed)
    fold_of = np.zeros(len(y), dtype=np.int64)
    p_model, p_logistic, p_plain = np.zeros(len(y)), np.zeros(len(y)), np.zeros(len(y))
    threads = int(settings.training.churn_params.get("num_threads", 0))
    rows = []
    for k, (train, test) in enumerate(splitter.split(X, y), start=1):
        X_tr, y_tr, X_te, y_te = X.iloc[train], y.iloc[train], X.iloc[test], y.iloc[test]
        model = fit_model(X_tr, y_tr, settings)
        p_model[test] = model.predict_proba(X_te)
        p_logistic[test] = LogisticChurnBaseline().fit(X_tr, y_tr).predict_proba(X_te)
        plain = PlainLightgbmBaseline(seed=settings.training.seed).fit(X_tr, y_tr, threads)
        p_plain[test] = plain.predict_proba(X_te)
        fold_of[test] = k
        m, b = churn_metrics(y_te, p_model[test]), churn_metrics(y_te, p_logistic[test])
        rows.append(
            {
                "fold": k,
                "n": len(test),
                "roc_auc": m["roc_auc"],
                "ece": m["ece"],
                "logistic_roc_auc": b["roc_auc"],
                "best_iteration": model.best_iteration,
            }
        )
        progress(
            f"fold {k}/{folds}: ROC AUC {m['roc_auc']:.4f} (logistic {b['roc_auc']:.4f}), "
            f"{model.best_iteration} trees, calibration {model.calibrator.kind}"
        )
    predictions = pd.DataFrame(
        {
            "churned": y,
            "fold": fold_of,
            "churn_probability": p_model,
            "churn_logistic": p_logistic,
            "churn_lightgbm_plain": p_plain,
        },
        index=X.index,
    )
    return CrossValidation(
        folds=folds,
        model=churn_metrics(y, p_model),
        baselines={
            "logistic": churn_metrics(y, p_logistic),
            "lightgbm_plain": churn_metrics(y, p_plain),
        },
        per_fold=pd.DataFrame(rows).set_index("fold"),
        predictions=predictions,
        allowed_leaks=allowed,
    )
