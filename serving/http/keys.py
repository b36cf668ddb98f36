"""The API key `retain serve` uses when `RETAIN_API_KEYS` is not set: kept in a file only this
user can read, created (and shown once) on first use."""

from __future__ import annotations

from pathlib import Path

KEY_FILE_ENV = "RETAIN_API_KEY_FILE"


def default_key_file() -> Path:
    """Where `retain serve` keeps the API key it creates: $XDG_CONFIG_HOME/retain/api_key
    (default ~/.config/retain/api_key)."""
    import os

    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "retain" / "api_key"


def resolve_api_key(path: Path) -> tuple[str, bool]:
    """The key stored at `path`, creating one (readable by this user only) when there is none;
    returns (key, created). A key file others can read is refused, not silently used."""
    import os
    import secrets
    import stat

    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ValueError(
                f"API key file {path} can be read by other users (mode {mode:o}); "
                f"run `chmod 600 {path}` or delete it to get a new key"
            )
        key = path.read_text(encoding="utf-8").strip()
        if not key:
            raise ValueError(f"API key file {path} is empty; delete it to get a new key")
        return key, False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key, True
