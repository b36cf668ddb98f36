"""The retrain lock: a file created exclusively and holding the pid of the process that holds
it, so two scheduled retrains never overlap; a lock left by a process that is no longer alive is
taken over."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".retain-retrain.lock"


class LockHeldError(RuntimeError):
    """Another live process holds the retrain lock."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


@contextmanager
def retrain_lock(path: Path, warn=lambda _: None) -> Iterator[Path]:
    """Hold `path` (created exclusively, holding this pid) for the duration. A lock left by a
    process that is no longer alive is taken over (with `warn`); a live one raises
    `LockHeldError`."""
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                text = path.read_text().strip()
            except OSError:
                text = ""
            pid = int(text) if text.isdigit() else -1
            if _pid_alive(pid) and attempt == 0:
                raise LockHeldError(
                    f"another retrain holds the lock {path} (pid {pid}); wait for it to finish, "
                    "or remove the file if that process is not a retrain"
                ) from None
            if attempt == 1:
                raise LockHeldError(f"could not take over the lock {path}") from None
            warn(
                f"warning: taking over the stale lock {path} "
                f"({'pid ' + str(pid) + ' is not running' if pid > 0 else 'no pid in it'})"
            )
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        break
    try:
        yield path
    finally:
        try:
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()
        except OSError:
            pass


def lock_path(data: str) -> Path:
    from features.sources import is_sql_url

    return Path(LOCK_NAME) if is_sql_url(data) else Path(data) / LOCK_NAME
