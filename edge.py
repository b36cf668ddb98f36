"""The command-line edge every `retain` command shares: the common options (`--data`,
`--config`, `--as-of`, `--cluster`), settings and cutoff parsing, progress lines on stderr,
reading tables with the printed reconciliation (or the partitions of a partitioned folder for a
cluster run), the Dask client of `--cluster`, the registry connection, and expected errors
turned into one clear message and exit code. Each package's `cli.py` parses with these, calls one use-case
function of its package and prints; no CLI imports another.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from configs import ConfigError, Settings, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="YAML file merged over configs/default.yaml.", show_default=False
    ),
]
DataOption = Annotated[
    str,
    typer.Option(
        "--data", help="Data folder (<table>.parquet|.csv) or SQLAlchemy URL.", show_default=False
    ),
]

ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        envvar="RETAIN_DASK_SCHEDULER",
        help="Run per partition on Dask: a scheduler address (tcp://host:8786) or local:N for a "
        "local cluster of N worker processes. --data must then be a partitioned folder "
        "(`retain partition`).",
        show_default=False,
    ),
]

F = TypeVar("F", bound=Callable[..., Any])

# Exit status for bad input (config, contract, arguments); 1 stays for unexpected crashes.
EXIT_BAD_INPUT = 2


def settings_from(config: Path | None) -> Settings:
    return load_settings(config)


def parse_cutoff(value: str, option: str = "--as-of"):
    """A cutoff given on the command line, as a UTC timestamp, or a usage error naming the option."""
    from features.contract import to_utc

    try:
        return to_utc(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def utc_now():
    """The wall clock, read here at the edge and passed down (nothing below reads it)."""
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


class Progress:
    """Timestamped progress lines on stderr, so long runs show where they are."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def __call__(self, message: str) -> None:
        typer.echo(f"[{time.perf_counter() - self._start:7.1f}s] {message}", err=True)


def handle_errors(*expected: type[BaseException]) -> Callable[[F], F]:
    """Report expected errors as `error: ...` on stderr with exit status 2, not a traceback."""
    caught = (ConfigError, *expected)

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except caught as exc:
                typer.echo(f"error: {exc}", err=True)
                sys.exit(EXIT_BAD_INPUT)

        return inner  # type: ignore[return-value]

    return wrap


def store_url(settings: Settings, data: str | None) -> str:
    """The store's URL: RETAIN_STORE_URL, else `store.url`, else SQLite under the data folder."""
    from store import url_for

    return url_for(settings.store.url, data, os.environ)


def given_store_url(settings: Settings, data: str | None, store: str | None) -> str:
    """`--store-url`, else the store of `--data` (as `store_url`); a usage error when neither
    they nor RETAIN_STORE_URL or `store.url` say which store is meant."""
    if (
        store is None
        and data is None
        and not settings.store.url
        and not os.environ.get("RETAIN_STORE_URL")
    ):
        raise typer.BadParameter("give --data DIR or --store-url URL (or set store.url)")
    return store or store_url(settings, data)


def _inbox(data: str, settings: Settings):
    """The store's inbox rows (those ingested since the last `retain compact`), or None."""
    from features.inbox import read_inbox
    from store import NoStoreError, Store

    try:
        with Store(store_url(settings, data), create=False) as store:
            inbox = read_inbox(store)
    except NoStoreError:
        return None
    return inbox if any(len(rows) for rows in inbox.values()) else None


def read_tables(data: str, progress: Progress, settings: Settings):
    """Read a source plus the store's inbox as one history, validate it and print the
    reconciliation; returns the ValidationResult."""
    from features.inbox import with_inbox
    from features.sources import read_source
    from features.validate import validate
    from store import redact

    progress(f"reading {data}")
    raw = read_source(data)
    inbox = _inbox(data, settings)
    if inbox is not None:
        raw, added = with_inbox(raw, inbox)
        progress(f"{added.summary()} from {redact(store_url(settings, data))}")
    progress("validating against the data contract")
    result = validate(raw)
    typer.echo(result.summary(), err=True)
    return result


def partitions(data: str, progress: Progress, settings: Settings):
    """The partitions of a partitioned folder for a cluster run, each with its share of the
    store's inbox; validation happens in the tasks (`features.distributed`)."""
    from features.distributed import partitions_of

    inbox = _inbox(data, settings)
    parts = partitions_of(data, inbox)
    added = {name: len(rows) for name, rows in (inbox or {}).items()}
    progress(
        f"{parts[0].manifest.partitions} partitions in {data}"
        + (f", plus inbox rows {added}" if inbox else "")
    )
    return parts


def _stdout_to_devnull() -> None:
    """A local worker's stdout (the command's own, inherited) to /dev/null: no task of ours
    prints, and LightGBM's socket threads print a few lines per distributed booster there,
    past any logger. Worker logs go to stderr and stay."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


@contextlib.contextmanager
def cluster(address: str | None, progress: Progress):
    """A Dask client for `--cluster` (None without one): `local:N` starts N local worker
    processes for the command's lifetime; anything else is a scheduler address."""
    if not address:
        yield None
        return
    import logging

    from distributed import Client, LocalCluster

    if address.startswith("local:"):
        try:
            n = int(address.removeprefix("local:"))
            if n < 1:
                raise ValueError
        except ValueError:
            raise typer.BadParameter(
                f"{address!r}: expected local:N with N >= 1 workers", param_hint="--cluster"
            ) from None
        progress(f"starting a local Dask cluster of {n} worker process(es)")
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as local,
            Client(local) as client,
        ):
            client.run(_stdout_to_devnull)
            yield client
        return
    progress(f"connecting to the Dask scheduler at {address}")
    try:
        client = Client(address, timeout="30s")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot reach the Dask scheduler at {address}: {exc}", param_hint="--cluster"
        ) from None
    with client:
        progress(f"{len(client.scheduler_info()['workers'])} Dask worker(s)")
        yield client


def registry():
    """The MLflow registry this process uses (`MLFLOW_TRACKING_URI`, else ./mlruns)."""
    from model.registry import Registry, quiet_mlflow, tracking_uri_from

    quiet_mlflow(os.environ)
    return Registry(tracking_uri_from(os.environ))


def champions(reg, progress: Progress):
    """The champion models from `reg`, announced on stderr."""
    from serving.core.champions import load_champions

    progress("loading the champion models from the MLflow registry")
    loaded = load_champions(reg)
    progress(f"champion models: churn v{loaded.churn_version}, clv v{loaded.clv_version}")
    for name in sorted(loaded.fallback):
        progress(
            f"WARNING: the {name} champion is a FALLBACK: it did not beat the baselines when it "
            "was trained (see `retain models`); its scores are usable but not proven better."
        )
    return loaded
