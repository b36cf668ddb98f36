"""The Retain HTTP service: a thin BentoML class over `serving.http.core.ServiceCore`.

Start it with `retain serve [--port N] [--data DIR] [--config FILE]`, which checks the registry,
resolves the API keys and runs `bentoml serve serving.http.service:RetainService` with:

    MLFLOW_TRACKING_URI   the registry holding `churn@champion` and `clv@champion`
    RETAIN_DATA_DIR       folder with the score store (`<dir>/scores/LATEST`); optional
    RETAIN_CONFIG         YAML merged over configs/default.yaml (service limits, tiers); optional
    RETAIN_API_KEYS       accepted API keys, comma-separated; required

Routes: `POST /score`, `POST /at_risk` (key required, JSON bodies, see `serving.http.payloads`), and
BentoML's `/healthz`, `/livez`, `/readyz` (no key). The models load once, when the worker
starts; without a champion, or without a key, the worker refuses to start and says why.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import anyio
import bentoml

from serving.http.core import ServiceCore
from serving.http.environment import environment, refuse_to_start
from serving.http.guard import Guard
from serving.http.loaded import LatestList
from serving.http.payloads import (
    AtRiskRequest,
    AtRiskResponse,
    Refused,
    ScoreRequest,
    ScoreResponse,
)

logger = logging.getLogger("retain.service")


# Requests this small are scored on the event loop (about a millisecond each): handing them to a
# thread costs more than it saves. Larger ones, and any that must first load a new snapshot, run
# in a worker thread so the loop keeps answering probes and small requests meanwhile.
INLINE_ITEMS = 16


async def _answer(inline: bool, call, **kwargs):
    """The core's answer, or its refusal as a JSON error with the status it chose."""
    from starlette.responses import JSONResponse

    try:
        if inline:
            return call(**kwargs)
        return await anyio.to_thread.run_sync(functools.partial(call, **kwargs))
    except Refused as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)


# Prometheus metrics and access logs cost about 0.3 ms each on a request of about 2 ms (two
# shared cores), so they are off; turn them on without a code change with
# BENTOML_CONFIG_OPTIONS="services.retain.metrics.enabled=true
# services.retain.logging.access.enabled=true".
@bentoml.service(
    name="retain",
    workers=1,
    traffic={"timeout": 60},
    metrics={"enabled": False},
    logging={"access": {"enabled": False}},
)
class RetainService:
    """Churn risk, customer value and reasons for customers, and the ranked at-risk list."""

    def __init__(self) -> None:
        from model.registry import Registry, quiet_mlflow
        from serving.core.champions import NoChampionError, load_champions
        from serving.score_store import ScoreStore

        logger.setLevel(logging.INFO)  # BentoML shows its own INFO lines only
        env = environment()
        quiet_mlflow(os.environ)
        try:
            # The error says how to train one.
            champions = load_champions(Registry(env.tracking_uri))
        except NoChampionError as exc:
            refuse_to_start(exc)
            raise
        store = ScoreStore(env.data_dir) if env.data_dir is not None else None
        scored = LatestList(store, champions)
        self.core = ServiceCore(champions, env.settings, scored)
        try:
            snap = scored.get()
            logger.info("scored list of %s: %d customers", snap.as_of, len(snap.ids))
        except Refused as exc:
            logger.warning("customer ids and /at_risk are unavailable: %s", exc.message)
        logger.info("serving churn v%s and clv v%s", champions.churn_version, champions.clv_version)

    @bentoml.api(route="/score", input_spec=ScoreRequest)
    async def score(
        self,
        customer_ids: list[str] | None = None,
        records: list[dict[str, Any]] | None = None,
        reasons: bool = True,
    ) -> ScoreResponse:
        """Score customers given by id (latest scored snapshot) or by feature records."""
        items = len(records) if records is not None else len(customer_ids or ())
        inline = items <= INLINE_ITEMS and (records is not None or self.core.scored.fresh())
        return await _answer(
            inline, self.core.score, customer_ids=customer_ids, records=records, reasons=reasons
        )

    @bentoml.api(route="/at_risk", input_spec=AtRiskRequest)
    async def at_risk(
        self,
        n: int | None = None,
        segment: list[str] | None = None,
        tier: list[str] | None = None,
    ) -> AtRiskResponse:
        """The top `n` of the latest ranked list, optionally only some segments and tiers."""
        shown = self.core.settings.service.at_risk_default_n if n is None else n
        inline = shown <= INLINE_ITEMS and self.core.scored.fresh()
        return await _answer(inline, self.core.at_risk, n=n, segment=segment, tier=tier)


class EnvGuard(Guard):
    """`serving.http.guard.Guard` with the keys and body limit this process was started with."""

    def __init__(self, app) -> None:
        env = environment()
        super().__init__(app, keys=env.keys, max_bytes=env.settings.service.max_request_bytes)


RetainService.add_asgi_middleware(EnvGuard)
