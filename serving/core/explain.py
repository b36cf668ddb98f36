"""Reasons: for each customer, the features pushing churn risk up most (TreeSHAP contributions
of the churn booster, in log-odds), written for a CX agent by `serving.core.reasons.describe`.
One implementation for batch scoring, outreach and the HTTP service.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.core.champions import Champions
from serving.core.reasons import describe

# A feature whose reason is better told by a sibling column (the class alone says less than the
# score with its class: "last NPS 3 (detractor)").
REASON_ALIASES: dict[str, str] = {"nps_class_last": "nps_last"}


def reasons_matrix(M: np.ndarray, X: pd.DataFrame, champions: Champions, n: int = 3) -> np.ndarray:
    """(len(X), n) reasons ("" where fewer) of the customers whose churn feature matrix is `M`
    and whose feature values (quoted in the text) are the rows of `X`, in the same order."""
    C = pd.DataFrame(
        champions.churn.contributions_matrix(M),
        index=X.index,
        columns=list(champions.churn.schema.columns),
    )
    return explain(C, X, n).to_numpy()


def reasons_for(X: pd.DataFrame, champions: Champions, n: int = 3) -> pd.DataFrame:
    """Columns `reason_1..n` for each row of the features frame `X`."""
    values = reasons_matrix(champions.churn.matrix(X), X, champions, n)
    return pd.DataFrame(values, index=X.index, columns=[f"reason_{i + 1}" for i in range(n)])


def explain(contributions: pd.DataFrame, X: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The `n` features with the largest positive contributions to risk in each row, written by
    `serving.core.reasons.describe` from the row's value in `X`; `contributions` has one column per
    feature and the rows of `X` in the same order. Only positive contributions count: a customer
    with fewer than `n` gets empty strings in the remaining columns. Two features that read the
    same (the NPS score and its class) give one reason."""
    if len(contributions) != len(X) or not contributions.index.equals(X.index):
        raise ValueError("contributions and features must have the same rows in the same order")
    columns = [f"reason_{i + 1}" for i in range(n)]
    out = np.full((len(X), n), "", dtype=object)
    if len(X) == 0 or n == 0:
        return pd.DataFrame(out, index=X.index, columns=columns)
    C = contributions.to_numpy(dtype=np.float64)
    names = list(contributions.columns)
    # More candidates than slots, so a duplicate phrase can give way to the next feature;
    # a stable descending sort keeps ties in column order.
    k = min(C.shape[1], 2 * n)
    order = np.argsort(-C, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(C, order, axis=1)
    for i in range(len(X)):
        seen: list[str] = []
        for j, c in zip(order[i], top[i], strict=True):
            if not c > 0 or len(seen) == n:
                break
            feature = REASON_ALIASES.get(names[j], names[j])
            if feature not in X.columns:
                feature = names[j]
            # A feature the frame lacks was missing (NaN) to the model.
            value = X[feature].iat[i] if feature in X.columns else np.nan
            text = describe(feature, value)
            if text not in seen:
                seen.append(text)
        out[i, : len(seen)] = seen
    return pd.DataFrame(out, index=X.index, columns=columns)
