"""Configuration: the YAML defaults and the typed settings model that validates them.

Settings are loaded once, at the command-line edge (`load_settings`), and passed down as a
`Settings` object; nothing below the CLI reads files or environment variables for config.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG = "default.yaml"


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; the message names the key path."""


# Metrics the promotion gate may compare, all "higher is better" (Brier and ECE enter negated).
CHURN_GATE_METRICS = {"roc_auc", "pr_auc", "lift_top_decile", "neg_brier"}
CLV_GATE_METRICS = {"gini_normalized", "spearman", "top_decile_revenue_share"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _windows(v: tuple[int, ...]) -> tuple[int, ...]:
    """Windows in days: positive, distinct, sorted."""
    if any(w <= 0 for w in v):
        raise ValueError(f"every window must be a positive number of days, got {list(v)}")
    if len(set(v)) != len(v):
        raise ValueError(f"windows must be distinct, got {list(v)}")
    return tuple(sorted(v))


class FeatureSettings(_Strict):
    windows_days: tuple[int, ...] = Field(default=(7, 30, 90, 365), min_length=1)
    negative_sentiment_threshold: float = Field(default=-0.05, ge=-1.0, le=1.0)

    @field_validator("windows_days")
    @classmethod
    def _positive_sorted_unique(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        return _windows(v)


class GateSettings(_Strict):
    """When a challenger may replace the champion: it must beat the champion's `metric` on the
    same evaluation snapshot by at least `min_improvement`, and beat every baseline."""

    metric: str
    min_improvement: float = Field(default=0.0, ge=0.0)


class SearchSettings(_Strict):
    """Optuna search over the churn booster's main LightGBM parameters (`training.search`)."""

    trials: int = Field(default=20, ge=0, description="0 turns the search off")
    timeout_s: float = Field(default=60.0, gt=0.0)
    max_rows: int = Field(default=100_000, ge=1000, description="fit rows sampled per trial")


class TrainingSettings(_Strict):
    cutoffs: int = Field(default=4, ge=2, description="feature snapshots in the training frame")
    cutoff_spacing_days: int = Field(default=30, ge=1)
    seed: int = 0
    experiment: str = Field(default="retain-training", min_length=1)
    num_boost_round: int = Field(default=2000, ge=1)
    early_stopping_rounds: int = Field(default=100, ge=1)
    churn_params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    clv_params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    leakage_auc_threshold: float = Field(default=0.95, gt=0.5, le=1.0)
    allow_leaky_features: tuple[str, ...] = ()
    # BG/NBD + Gamma-Gamma outputs as features (refitted at every cutoff) and blends of the
    # models with BG/NBD and a logistic regression, chosen on validation.
    classic_models: bool = True
    search: SearchSettings = SearchSettings()
    # After the evaluation and the gate, fit the served models again with the evaluation
    # snapshot as the newest training snapshot (the same procedure, one horizon later).
    refit_latest: bool = True
    gate_churn: GateSettings = GateSettings(metric="roc_auc")
    gate_clv: GateSettings = GateSettings(metric="gini_normalized")

    @field_validator("gate_churn")
    @classmethod
    def _churn_metric(cls, v: GateSettings) -> GateSettings:
        if v.metric not in CHURN_GATE_METRICS:
            raise ValueError(
                f"churn gate metric must be one of {sorted(CHURN_GATE_METRICS)}, got {v.metric!r}"
            )
        return v

    @field_validator("gate_clv")
    @classmethod
    def _clv_metric(cls, v: GateSettings) -> GateSettings:
        if v.metric not in CLV_GATE_METRICS:
            raise ValueError(
                f"clv gate metric must be one of {sorted(CLV_GATE_METRICS)}, got {v.metric!r}"
            )
        return v


class TierSettings(_Strict):
    """`high` tier: churn probability >= risk_high and CLV >= value_high; `medium`: at least one of
    risk >= risk_medium or value at risk >= value_at_risk_medium; `low`: the rest."""

    risk_high: float = Field(default=0.15, gt=0.0, le=1.0)
    value_high: float = Field(default=50.0, ge=0.0)
    risk_medium: float = Field(default=0.10, gt=0.0, le=1.0)
    value_at_risk_medium: float = Field(default=5.0, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> TierSettings:
        if self.risk_medium > self.risk_high:
            raise ValueError(
                f"risk_medium ({self.risk_medium}) must not exceed risk_high ({self.risk_high})"
            )
        return self


class ScoringSettings(_Strict):
    tiers: TierSettings = TierSettings()
    # Reasons (the three features pushing risk up most) are computed for this many customers at
    # the top of the ranked list; the rest get empty reasons so ranking millions stays fast.
    reasons_top_n: int = Field(default=1000, ge=0)
    batch_size: int = Field(default=200_000, ge=1000)


class OutreachSettings(_Strict):
    """Who is handed to outreach, how often, and how their contact is delivered."""

    campaign: str = Field(default="retention", min_length=1)
    min_churn_probability: float = Field(default=0.15, ge=0.0, le=1.0)
    min_clv: float = Field(default=50.0, ge=0.0)
    capacity_per_run: int = Field(default=500, ge=1)
    cooldown_days: int = Field(default=30, ge=0)
    # Customers in the selection but held out (never contacted) to measure the effect later.
    control_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    exclude_segments: tuple[str, ...] = ()
    exclude_customers: tuple[str, ...] = ()
    # File drop folder; empty means <data folder>/outreach/drop.
    file_drop_dir: str = ""
    # Webhook URL; RETAIN_OUTREACH_WEBHOOK_URL overrides; empty means no webhook dispatch.
    webhook_url: str = ""
    webhook_timeout_s: float = Field(default=10.0, gt=0.0)
    max_attempts_per_run: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=0.5, ge=0.0)
    backoff_max_s: float = Field(default=30.0, ge=0.0)
    # How long a webhook delivery holds the contacts (and case hand-offs) it claimed, renewed at
    # each attempt: a process that dies leaves them to the next delivery this much later.
    claim_lease_s: float = Field(default=60.0, gt=0.0)


class ServiceSettings(_Strict):
    port: int = Field(default=3000, ge=1, le=65535)
    # Worker processes of `retain serve` (each loads the models, the scored list and the
    # history; they share the store, so every row, case and hand-off still counts once).
    workers: int = Field(default=1, ge=1, le=64)
    max_request_items: int = Field(default=1000, ge=1)
    max_request_bytes: int = Field(default=5_000_000, ge=1024)
    at_risk_default_n: int = Field(default=100, ge=1)
    # Seconds between each worker's look at the registry for newly promoted champions (it
    # swaps them in without a restart); 0 keeps the models loaded at start.
    champion_check_s: float = Field(default=30.0, ge=0.0)


# Evidently stattests allowed per column type: distances only (drift when the distance is at or
# above the threshold), so scores rank columns by how far they moved whatever the sample size.
# The categorical test also serves numerical columns constant in the reference, so each one
# must accept numerical columns too.
NUMERICAL_STATTESTS = ("wasserstein", "jensenshannon", "psi", "hellinger", "kl_div", "ed")
CATEGORICAL_STATTESTS = ("jensenshannon", "psi", "hellinger", "kl_div")


class MonitoringSettings(_Strict):
    """Thresholds and sizes of the monitoring reports and the retrain trigger; why the drift
    defaults are what they are is in `monitoring.settings`."""

    # Drift: both sides are sampled to at most this many rows (seeded, by a hash of customer_id).
    sample_size: int = Field(default=50_000, ge=100)
    seed: int = 0
    # Share of the counted feature columns (age-matched, ageing ones left out) that must drift
    # before a retrain is due; measurements in monitoring.settings.
    drift_share_threshold: float = Field(default=0.08, gt=0.0, le=1.0)
    # Per-column test: a column drifts when its distance is at or above stattest_threshold.
    numerical_stattest: str = "wasserstein"
    categorical_stattest: str = "jensenshannon"
    stattest_threshold: float = Field(default=0.1, gt=0.0)
    # Columns with fewer non-missing values than this on either side are skipped, not tested.
    min_column_values: int = Field(default=300, ge=1)
    # The trigger that weighs what the model uses: the champions' importance (mean absolute
    # TreeSHAP contribution on up to importance_sample reference rows) held by drifted features.
    # Measurements behind 0.06 and 0.3 in monitoring.settings.
    weighted_drift_threshold: float = Field(default=0.06, gt=0.0, le=1.0)
    importance_sample: int = Field(default=2_000, ge=50)
    # Rows per side for the estimate of the current ROC AUC before the labels mature.
    estimate_sample: int = Field(default=20_000, ge=200)
    # Prediction drift (churn probability, CLV) at or above this distance makes a retrain due.
    prediction_drift_threshold: float = Field(default=0.3, gt=0.0)
    # Ageing is not drift: the reference sample is redrawn so that this feature (the customer's
    # age in the book) has the current sample's distribution, in age_bins quantile bins of the
    # current, before anything is compared; "" compares the samples as they are.
    age_feature: str = "tenure_days"
    age_bins: int = Field(default=10, ge=2)
    # Features that grow with the book's age by construction (fnmatch patterns): reported, but
    # left out of the drift share and the weighted drift.
    ageing_features: tuple[str, ...] = (
        "tenure_days",
        "days_since_first_purchase",
        "*_total",
        "*_count",
        "distinct_products",
        "age",
    )

    # Matured performance: floors under which a retrain is due, and the least matured rows needed.
    min_roc_auc: float = Field(default=0.65, ge=0.0, le=1.0)
    min_gini: float = Field(default=0.3, ge=-1.0, le=1.0)
    min_matured_rows: int = Field(default=200, ge=1)

    # CX KPIs: survey and churn windows (days before as_of); the top CLV share called high impact.
    kpi_windows_days: tuple[int, ...] = Field(default=(30, 90), min_length=1)
    high_impact_share: float = Field(default=0.1, gt=0.0, lt=1.0)

    # Outreach effect: matured outcomes needed in each of contact and control before an estimate,
    # and the confidence level of its interval.
    min_matured_per_group: int = Field(default=200, ge=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)

    # MLflow experiment the monitoring runs and their reports are logged to (by the CLI).
    experiment: str = Field(default="retain-monitoring", min_length=1)

    @field_validator("kpi_windows_days")
    @classmethod
    def _positive_sorted_unique(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        return _windows(v)

    @field_validator("numerical_stattest")
    @classmethod
    def _numerical(cls, v: str) -> str:
        if v not in NUMERICAL_STATTESTS:
            raise ValueError(f"must be one of {list(NUMERICAL_STATTESTS)}, got {v!r}")
        return v

    @field_validator("categorical_stattest")
    @classmethod
    def _categorical(cls, v: str) -> str:
        if v not in CATEGORICAL_STATTESTS:
            raise ValueError(f"must be one of {list(CATEGORICAL_STATTESTS)}, got {v!r}")
        return v


class StoreSettings(_Strict):
    """The store: inbox, quarantine, moments, cases and their history, hand-offs, score history."""

    # Empty: SQLite at <data folder>/store/retain.db (./store/ for a SQL source); the
    # environment variable RETAIN_STORE_URL overrides it at the command-line edge.
    url: str = ""


class NegativeMomentSettings(_Strict):
    """Which ingested rows are negative moments ("moments of truth")."""

    nps_at_or_below: int = Field(default=6, ge=0, le=10)
    csat_at_or_below: int = Field(default=2, ge=1, le=5)
    ces_at_or_below: int = Field(default=3, ge=1, le=7)
    event_types: tuple[str, ...] = ("complaint", "delivery_issue", "payment_failed")
    # A resolved complaint or delivery issue (`resolved` true) is not a negative moment.
    skip_resolved: bool = True
    # A comment at or below features.negative_sentiment_threshold is a moment of its own.
    negative_comment: bool = True


class AssignmentRule(_Strict):
    """Cases of customers matching every given attribute go to `team`, round robin."""

    segment: str | None = None
    region: str | None = None
    team: tuple[str, ...] = Field(min_length=1)


class EscalationSettings(_Strict):
    # An overdue case moves one priority up (p3 -> p2 -> p1), gets a fresh due time from the
    # SLA of its new priority, is reassigned to escalation_team (round robin) when given, and is
    # handed off again (webhook, file drop) as an escalation.
    escalation_team: tuple[str, ...] = ()
    # Open or in-progress cases older than this become `expired` when escalated.
    expire_after_days: int = Field(default=30, ge=1)


class LoopSettings(_Strict):
    """The closed loop: negative moments -> rescoring -> recovery cases, with a holdout."""

    negative: NegativeMomentSettings = NegativeMomentSettings()
    # Who qualifies after rescoring: value at risk (churn probability x CLV) at least this and a
    # tier among `tiers`; at most capacity_per_day new cases per UTC day; no new case for a
    # customer within cooldown_days of their last closed one for the same reason.
    min_value_at_risk: float = Field(default=0.0, ge=0.0)
    tiers: tuple[str, ...] = ("high", "medium", "low")
    capacity_per_day: int = Field(default=500, ge=1)
    cooldown_days: int = Field(default=7, ge=0)
    exclude_segments: tuple[str, ...] = ()
    exclude_customers: tuple[str, ...] = ()
    # Share of qualifying moments held out (recorded, never contacted): the recovery control
    # group, drawn by a hash of salt and the moment's row id, so every process draws the same.
    holdout_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    # Customers whose newest ingested rows lie within this many seconds of each other are
    # rescored together, as of just after the newest of those rows (one feature pass for a whole
    # batch); 0 rescores each customer exactly as of just after their own newest row.
    rescore_window_s: float = Field(default=60.0, ge=0.0)
    # Where several processes share the store, each handles the rows it ingested; a row still
    # pending after this many seconds (its process died, or `retain ingest` stored it) is
    # handled by whichever process steps next.
    stale_after_s: float = Field(default=5.0, ge=0.0)
    holdout_salt: str = Field(default="retain-loop", min_length=1)
    # Priority from value at risk: p1 at or above p1_value_at_risk, p2 at or above
    # p2_value_at_risk, else p3; the SLA (hours to resolve) of each.
    p1_value_at_risk: float = Field(default=20.0, ge=0.0)
    p2_value_at_risk: float = Field(default=5.0, ge=0.0)
    sla_hours: dict[str, float] = Field(default_factory=lambda: {"p1": 4.0, "p2": 24.0, "p3": 72.0})
    # Owners: the first rule matching the customer's attributes, else default_team.
    assignment: tuple[AssignmentRule, ...] = ()
    default_team: tuple[str, ...] = Field(default=("cx-team",), min_length=1)
    escalation: EscalationSettings = EscalationSettings()
    # Closing a case (resolved, unreachable, declined) needs one of these resolution codes.
    resolution_codes: tuple[str, ...] = Field(
        default=(
            "apologised",
            "refunded",
            "replaced",
            "fixed",
            "goodwill_credit",
            "explained",
            "no_action_needed",
            "other",
        ),
        min_length=1,
    )
    # Hand-off of new and escalated cases: a JSON webhook (RETAIN_CASES_WEBHOOK_URL overrides it;
    # empty = off) with an Idempotency-Key, and a CSV file drop (empty = <data>/store/cases-drop).
    webhook_url: str = ""
    file_drop_dir: str = ""

    @field_validator("sla_hours")
    @classmethod
    def _every_priority(cls, v: dict[str, float]) -> dict[str, float]:
        missing = [p for p in ("p1", "p2", "p3") if p not in v]
        if missing or any(h <= 0 for h in v.values()):
            raise ValueError(f"needs positive hours for p1, p2 and p3, got {v}")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> LoopSettings:
        if self.p1_value_at_risk < self.p2_value_at_risk:
            raise ValueError("p1_value_at_risk must be at least p2_value_at_risk")
        return self


class WorkspaceSettings(_Strict):
    """The CX workspace (`/ui` on `retain serve`): sign-in, list paging, the customer page."""

    session_hours: float = Field(default=12.0, gt=0.0)
    token_days: float = Field(default=7.0, gt=0.0)
    page_size: int = Field(default=50, ge=1, le=500)
    export_max_rows: int = Field(default=100_000, ge=1)
    trend_lists: int = Field(default=12, ge=1, le=100)
    timeline_rows: int = Field(default=200, ge=1)
    contact_outcomes: tuple[str, ...] = Field(
        default=("reached", "left_message", "no_answer", "wrong_number", "declined"), min_length=1
    )


class Settings(_Strict):
    horizon_days: int = Field(default=90, ge=1, le=3650)
    activity_event_types: tuple[str, ...] = Field(default=("purchase",), min_length=1)
    features: FeatureSettings = FeatureSettings()
    training: TrainingSettings = TrainingSettings()
    scoring: ScoringSettings = ScoringSettings()
    outreach: OutreachSettings = OutreachSettings()
    service: ServiceSettings = ServiceSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    store: StoreSettings = StoreSettings()
    loop: LoopSettings = LoopSettings()
    workspace: WorkspaceSettings = WorkspaceSettings()


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    return data


# Keys of earlier releases, and where what they set lives now.
MOVED = {
    "outreach.outbox_url": "no longer a setting: the outbox lives in the store, set store.url "
    "(or RETAIN_STORE_URL) instead",
}


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        got_text = "" if err["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = MOVED.get(path, "unknown key; check the spelling against configs/default.yaml")
            got_text = ""
        lines.append(f"  {path}: {msg}{got_text}")
    return "\n".join(lines)


def default_config_text() -> str:
    return resources.files("configs").joinpath(DEFAULT_CONFIG).read_text(encoding="utf-8")


def settings_from_dict(data: dict[str, Any], origin: str = "<settings>") -> Settings:
    """Validate a settings mapping merged over the packaged defaults."""
    merged = _deep_merge(_read_yaml(default_config_text(), DEFAULT_CONFIG), data)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults from `configs/default.yaml`, with the file at `path` (if any) merged over them."""
    if path is None:
        return settings_from_dict({}, DEFAULT_CONFIG)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    return settings_from_dict(_read_yaml(text, str(path)), str(path))
