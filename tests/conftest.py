"""Test tiers: every test gets one marker, so `pytest -m unit` (`make test-fast`) runs the quick
tier alone. `data` tests are marked where they are written; the rest by where they live and
what they need: a real `bentoml serve` is `service`, a CLI run or a trained synthetic world
(an MLflow store with champions) is `integration`, everything else `unit`. A module may mark
itself `service` (pytestmark) when it starts its own server."""

from __future__ import annotations

import pytest

TRAINED = {"trained_world", "champions", "world", "env", "store", "champion_store"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("data") or item.get_closest_marker("service"):
            continue
        path = str(item.path)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif path.endswith("test_service.py") and "server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.service)
        elif TRAINED & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


# -- a real PostgreSQL server ---------------------------------------------------------------------

import glob  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

INSTALL_POSTGRES = "install it with `apt-get update && apt-get install -y postgresql`"


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _no_server(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is needed under CI=true: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}; {INSTALL_POSTGRES}")


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (initdb + pg_ctl in a temporary folder, trust auth on
    127.0.0.1), as an unprivileged user: `postgres` when the tests run as root. Yields the
    base URL; skipped without a server (failed under CI=true)."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        _no_server("pg_ctl not found")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_server("the psycopg driver is not installed")
    root = Path(tempfile.mkdtemp(prefix="retain-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _no_server("running as root and there is no `postgres` user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(sock, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr[-2000:]}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "retain", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql+psycopg://retain@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server; dropped afterwards."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The store's URL on each database the store supports: SQLite, and a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'retain.db'}"
    return request.getfixturevalue("postgres_url")


# -- a real Chromium ------------------------------------------------------------------------------

INSTALL_CHROMIUM = "install it with `apt-get update && apt-get install -y chromium`"


def _chromium() -> str | None:
    for name in (os.environ.get("RETAIN_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright through `executable_path` (no browser is
    ever downloaded). Skips without Chromium, and fails under CI=true."""
    executable = _chromium()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is needed under CI=true: {INSTALL_CHROMIUM}")
        pytest.skip(f"no Chromium: {INSTALL_CHROMIUM} (or set RETAIN_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    # As root (CI) Chromium refuses to start with its sandbox on.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def dask_client():
    """A real local Dask cluster of 2 worker processes (one thread each) for a test module."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as connected,
    ):
        yield connected
