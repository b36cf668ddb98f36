"""Shared fixtures for the serving tests: a small synthetic world on disk with `champion` churn
and CLV models trained on it in a temporary MLflow store, and a local webhook `Receiver`.

`trained_world` (session scoped) yields `TrainedWorld(data_dir, tracking_uri, settings)`, a named
tuple, so `data_dir, uri, settings = trained_world` works. Treat it as read-only: copy
`data_dir` before writing into it, and register nothing in its store.

The models are fitted as `training.pipeline` fits them (same training frames, same split) and
registered exactly as `training.run` registers them (`_log_model`: a pyfunc model under the
names `churn` and `clv`), then promoted to `champion` by hand. Baselines, evaluation, plots and
the gate are skipped: they cost most of a training run and `tests/integration/test_cli_score.py`
goes through the real `retain train`. Cost: a few seconds plus creating the MLflow store (about
6 s of schema migrations on a fresh SQLite file). Few trees (at most 30 rounds) and one
LightGBM thread: OpenMP threads spin while they wait, so the default of all cores is many
times slower on a busy machine for frames this small.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import httpx
import pandas as pd
import pytest

from configs import Settings, settings_from_dict
from features.synthetic import generate_world, write_world
from features.validate import validate

WORLD_CUSTOMERS = 2000
WORLD_SEED = 1
# The generated world runs 2024-01-01 .. 2026-01-01; scoring at its end scores "today".
SCORE_AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
FAST_TRAINING = {
    "num_boost_round": 30,
    "early_stopping_rounds": 5,
    "churn_params": {"num_threads": 1},
    "clv_params": {"num_threads": 1},
    "search": {"trials": 3},
}


class TrainedWorld(NamedTuple):
    data_dir: Path
    tracking_uri: str
    settings: Settings


def train_world(root: Path) -> TrainedWorld:
    """Write the world under `root/data` and register champions in `root/mlruns`."""
    import mlflow

    from model.registry import Registry
    from training.baselines import fit_btyd_params
    from training.churn import ChurnTrainer
    from training.clv import ClvTrainer
    from training.frames import build_training_data
    from training.pipeline import _split_fit_valid, add_btyd
    from training.tracking import log_model

    data_dir = root / "data"
    write_world(generate_world(WORLD_CUSTOMERS, WORLD_SEED), data_dir)
    settings = settings_from_dict({"training": FAST_TRAINING}, "tests/serving/conftest.py")
    t = settings.training
    tables = validate_tables(data_dir)
    # As `training.pipeline` does: BTYD features at every cutoff, parameters saved for scoring.
    data = add_btyd(build_training_data(tables, settings), tables, settings)
    btyd = fit_btyd_params(tables, data.cutoffs.known_until, settings)
    X_fit, y_fit, X_valid, y_valid, X_eval = _split_fit_valid(data)
    boosting = {
        "num_boost_round": t.num_boost_round,
        "early_stopping_rounds": t.early_stopping_rounds,
    }
    models = {
        "churn": ChurnTrainer(dict(t.churn_params), **boosting).fit(
            X_fit, y_fit["churned"], X_valid, y_valid["churned"]
        ),
        "clv": ClvTrainer(dict(t.clv_params), **boosting).fit(
            X_fit, y_fit["future_value"], X_valid, y_valid["future_value"]
        ),
    }
    models = {kind: replace(model, btyd=btyd) for kind, model in models.items()}
    uri = f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"
    registry = Registry(uri)
    experiment = registry.ensure_experiment(t.experiment)
    with registry.active(), mlflow.start_run(experiment_id=experiment, run_name="serving-fixture"):
        for kind, model in models.items():
            info = log_model(kind, model, X_eval, root / "models")
            registry.record_promotion(
                kind, str(info.registered_model_version), kind="manual", reason="serving fixture"
            )
    return TrainedWorld(data_dir, uri, settings)


def validate_tables(data_dir: Path):
    from features.sources import read_folder

    result = validate(read_folder(data_dir))
    for name, rows in result.quarantine.items():
        assert rows.empty, f"the synthetic world broke the contract in {name}"
    return result.tables


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory) -> TrainedWorld:
    """(data_dir, tracking_uri, settings): a world on disk and champions in an MLflow store."""
    return train_world(tmp_path_factory.mktemp("serving_world"))


@pytest.fixture(scope="session")
def score_as_of() -> pd.Timestamp:
    """The cutoff the serving tests score at: the end of the world's data."""
    return SCORE_AS_OF


@pytest.fixture(scope="session")
def champions(trained_world):
    """The champions of `trained_world`, loaded once (read-only)."""
    from model.registry import Registry
    from serving.core.champions import load_champions

    return load_champions(Registry(trained_world.tracking_uri))


@pytest.fixture(scope="session")
def world_tables(trained_world):
    """The world's validated tables (read-only)."""
    return validate_tables(trained_world.data_dir)


@pytest.fixture(scope="session")
def world_features(world_tables, trained_world, champions, score_as_of) -> pd.DataFrame:
    """The features the champions score at `score_as_of`, BTYD features included (read-only;
    copy before changing)."""
    from serving.core.ranking import population_features

    return population_features(world_tables, score_as_of, champions, trained_world.settings)


class Receiver:
    """A webhook receiver on a free local port. `plan(n, key)` decides what request number `n`
    gets: "ok", "500", "503", "404", "drop" (close without answering) or "lost" (process it, then
    drop the connection so the sender never hears). It deduplicates by Idempotency-Key, like a
    well-behaved receiver, and records every post."""

    def __init__(self, plan=lambda n, key: "ok", delay: float = 0.0) -> None:
        self.plan, self.delay = plan, delay
        self.posts: list[str] = []  # Idempotency-Key of every request, in arrival order
        self.accepted: dict[str, dict] = {}  # key -> body, first time it was processed
        self.mismatched: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key", "")
                with receiver.lock:
                    action = receiver.plan(len(receiver.posts), key)
                    receiver.posts.append(key)
                    if body.get("idempotency_key") != key:
                        receiver.mismatched.append(key)
                if receiver.delay:
                    time.sleep(receiver.delay)
                if action in ("ok", "lost"):
                    with receiver.lock:
                        receiver.accepted.setdefault(key, body)
                if action in ("drop", "lost"):
                    self.close_connection = True
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                code = 200 if action == "ok" else int(action)
                reply = b'{"ok": true}' if code == 200 else b'{"error": "try later"}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a sender killed mid-request leaves a broken pipe; that is the point

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/outreach"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def reposted(self) -> list[str]:
        return [key for key, n in Counter(self.posts).items() if n > 1]


@pytest.fixture(name="Receiver", scope="session")
def receiver_class():
    """The `Receiver` class (a local webhook receiver); use as `with Receiver(plan) as r:`."""
    return Receiver


# -- a real `retain serve` -----------------------------------------------------------------------

START_TIMEOUT_S = 180


def save_snapshot(root, as_of, scores, features):
    """A ranked list and its features stored as the latest scored list under `root`."""
    from features.contract import to_utc
    from serving.core.ranking import ScoredList
    from serving.score_store import ScoreStore

    return ScoreStore(root).save(ScoredList(to_utc(as_of), scores, features))


class Server(NamedTuple):
    url: str
    log: Path
    ranked: pd.DataFrame | None = None  # the snapshot's ranked list (batch scoring)
    features: pd.DataFrame | None = None  # the snapshot's features

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_service(
    tmp: Path, data: Path, config: Path, tracking_uri: str, keys, env: dict | None = None
) -> Iterator[Server]:
    """`retain serve` on a free port over `data`, until the block ends (its log in tmp)."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    environ = os.environ | {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "RETAIN_API_KEYS": ",".join(keys),
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    retain = str(Path(sys.executable).with_name("retain"))
    args = [retain, "serve", "--port", str(port), "--data", str(data), "--config", str(config)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    srv = Server(f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(proc, srv)
        yield srv
    finally:
        _stop(proc)


def wait_ready(proc: subprocess.Popen, srv: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the service exited with status {proc.returncode}:\n{srv.tail()}")
        try:
            if httpx.get(f"{srv.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the service was not ready within {START_TIMEOUT_S} s:\n{srv.tail()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(name="running_service", scope="session")
def running_service_fixture():
    """`running_service(tmp, data, config, tracking_uri, keys, env)`: a context manager."""
    return running_service


@pytest.fixture(name="save_snapshot", scope="session")
def save_snapshot_fixture():
    return save_snapshot
