"""What `retain serve` hands the service process: the environment variables it sets, read once
by the worker (its edge), and the refusal to start when something it needs is missing."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.registry import tracking_uri_from
from serving.http.guard import parse_api_keys

logger = logging.getLogger("retain.service")

ENV_TRACKING = "MLFLOW_TRACKING_URI"
ENV_DATA = "RETAIN_DATA_DIR"
ENV_CONFIG = "RETAIN_CONFIG"
ENV_KEYS = "RETAIN_API_KEYS"
# Worker processes of the service (`retain serve --workers`, `service.workers`); they share the
# store, so rows, cases and hand-offs still count once (serving.http.loop).
ENV_WORKERS = "RETAIN_WORKERS"


class NoKeyError(RuntimeError):
    """The service was started without any accepted API key."""


@dataclass(frozen=True)
class Environment:
    settings: Any  # configs.Settings
    data_dir: Path | None
    tracking_uri: str
    keys: tuple[str, ...]
    store_url: str  # the loop's store (inbox, cases): RETAIN_STORE_URL, store.url or <data>/store
    cases_webhook_url: str  # RETAIN_CASES_WEBHOOK_URL or loop.webhook_url; "" = none


@functools.cache
def environment() -> Environment:
    """What `retain serve` handed this process, read once (the worker's edge). Without a key or
    with a bad config file the server stops (see `refuse_to_start`)."""
    from configs import ConfigError, load_settings

    try:
        keys = parse_api_keys(os.environ.get(ENV_KEYS))
        if not keys:
            raise NoKeyError(
                f"no API key: set {ENV_KEYS} (comma-separated keys), or start the service "
                "with `retain serve`, which creates one"
            )
        settings = load_settings(os.environ.get(ENV_CONFIG) or None)
    except (NoKeyError, ConfigError) as exc:
        refuse_to_start(exc)
        raise
    from serving.loop.handoff import webhook_url
    from store import url_for

    data = os.environ.get(ENV_DATA) or None
    return Environment(
        settings=settings,
        data_dir=Path(data) if data else None,
        tracking_uri=tracking_uri_from(os.environ),
        keys=keys,
        store_url=url_for(settings.store.url, data, os.environ),
        cases_webhook_url=webhook_url(settings, dict(os.environ)),
    )


def refuse_to_start(exc: Exception) -> None:
    """Stop the whole server, not just this worker: BentoML would start the worker again and
    again, and no retry can conjure up a champion model or an API key."""
    import signal

    import psutil

    logger.error("the Retain service cannot start: %s", exc)
    parent = psutil.Process(os.getppid())
    try:
        launched_by_bentoml = any("bentoml" in part for part in parent.cmdline())
    except psutil.Error:
        launched_by_bentoml = False
    if launched_by_bentoml:
        os.kill(parent.pid, signal.SIGTERM)
