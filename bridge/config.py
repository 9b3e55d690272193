"""The bridge's configuration: every timeout, limit and policy in one frozen object.

Values come from four places, later ones winning: the defaults below, a TOML file, ``BRIDGE_*`` environment
variables, and explicit overrides (command-line flags, or keyword arguments in a Kivy app). The library never
reads the environment by itself: :func:`load_config` does, and only when asked.

The TOML file is ``config.toml`` in the platform's user config dir (``platformdirs.user_config_dir("ota-bridge")``),
or the file named by ``--config`` / ``BRIDGE_CONFIG``. Its keys are the field names of :class:`BridgeConfig`, at
the top level or in a ``[bridge]`` table::

    server_url = "https://firmware.example.com/repo"
    channel = "stable"
    connect_timeout_s = 15

The matching environment variable is the key in upper case with a ``BRIDGE_`` prefix (``BRIDGE_SERVER_URL``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from bridge.errors import ConfigError

__all__ = [
    "APP_NAME",
    "KNOWN_ENV_VARS",
    "BridgeConfig",
    "default_config_file",
    "default_data_dir",
    "load_config",
    "to_toml",
    "trusted_server_urls",
    "unknown_env_vars",
]

APP_NAME = "ota-bridge"

#: Environment variables that are not configuration keys: the file itself, the radio (read by the CLI's ``--hci``
#: option, not by :func:`load_config`: a library user passes ``backend=bridge.ble.backend_from_hci(...)``) and the
#: firmware corpus folder of the test suite.
_NOT_KEYS = frozenset({"BRIDGE_CONFIG", "BRIDGE_HCI", "BRIDGE_FIRMWARE_DIR"})


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeConfig:
    """Everything the sync engine may wait for, retry or refuse. Units are in the names."""

    # Where things are.
    server_url: str | None = None
    """The update server (a TUF repository). ``None``: only ``push`` and the offline cache work."""
    data_dir: Path = field(default_factory=default_data_dir)
    """Trusted root, metadata, the download cache and the journal live here."""
    channel: str = "stable"
    """Release channel to follow (``stable``, ``beta``, ...)."""
    board_name_prefix: str = ""
    """Scan filter: only boards whose advertised name starts with this (empty: every board with our service)."""

    # BLE.
    scan_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    connect_retries: int = 2
    """Extra connect attempts before a link is declared failed."""
    reply_timeout_s: float = 5.0
    """A control command's reply (HELLO, ABORT, COMMIT)."""
    begin_timeout_s: float = 30.0
    """BEGIN's reply: the board erases the target partition first."""
    ack_timeout_s: float = 10.0
    """Silence while data is in flight before the link is considered stalled."""
    finish_timeout_s: float = 30.0
    """FINISH's reply: the board hashes and validates the whole image."""
    abort_timeout_s: float = 2.0
    """Best-effort ABORT on cancellation or failure."""
    reboot_timeout_s: float = 90.0
    """From COMMIT until the board answers again (boot, self-test, and a possible rollback reboot)."""
    reconnect_attempts: int = 5
    """How often an upload reconnects after the link drops before it gives up."""
    reconnect_backoff_s: float = 0.5
    """First wait before reconnecting; doubles each attempt up to ``reconnect_backoff_max_s``."""
    reconnect_backoff_max_s: float = 8.0
    max_window_bytes: int = 64 * 1024
    """Upper bound on data in flight, whatever window the board grants (memory is bounded by this)."""

    # Server.
    http_timeout_s: float = 30.0
    max_offline_age_s: float = 7 * 24 * 3600.0
    """How old a verified cached image may be for an offline push (``bridge fetch`` refreshes it)."""

    # Policies.
    allow_same_version: bool = False
    """``push`` an image the board already runs (normally reported as up to date and skipped)."""
    allow_other_project: bool = False
    """``push`` an image of another project than the one the board runs (normally refused)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = _problem(f.name, getattr(self, f.name))
            if problem:
                raise ConfigError(f"{f.name}: {problem}", hint=_hint(f.name))

    @property
    def journal_file(self) -> Path:
        return self.data_dir / "journal.jsonl"

    def replace(self, **changes: Any) -> BridgeConfig:
        """A copy with ``changes`` applied (validated like the original)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for ``bridge config show --json``."""
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v) for f in fields(self)}


def _problem(key: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``key`` (None if it is)."""
    if key.endswith("_s") and (
        isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf  # NaN too
    ):
        return f"must be a positive number of seconds, not {value!r}"
    if key in {"connect_retries", "reconnect_attempts"} and (
        isinstance(value, bool) or not isinstance(value, int) or value < 0
    ):
        return f"must be a whole number >= 0, not {value!r}"
    if key == "max_window_bytes" and (isinstance(value, bool) or not isinstance(value, int) or value < 512):
        return f"must be a whole number of bytes >= 512, not {value!r}"
    if key == "server_url" and value is not None and not re.match(r"^https?://\S+$", str(value)):
        return f"must start with http:// or https://, not {value!r}"
    if key == "channel" and not value:
        return "must not be empty"
    if key == "data_dir" and isinstance(value, Path):
        return _folder_problem(value)
    return None


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a folder: it, or the nearest part of it that exists, is not a folder."""
    for part in (path, *path.parents):
        try:
            if not part.exists():
                continue
        except OSError:
            return None  # unreadable: the first write says why
        if part.is_dir():
            return None
        if part == path:
            return f"must be a folder, but {path} is a file"
        return f"must be a folder, but {path} cannot be created: {part} is a file"
    return None


def _hint(key: str) -> str:
    if key == "data_dir":
        return "Point data_dir at a folder (it is created if missing), or remove it to use the default one."
    if key == "server_url":
        return "Set server_url to the update server's address, e.g. https://firmware.example.com/repo."
    return f"Fix {key} in the configuration file, environment or flags (`bridge config show` lists every key)."


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(BridgeConfig)}


def _coerce(key: str, value: Any, *, origin: str) -> Any:
    """Turn a TOML or environment value into the field's type, or raise ConfigError naming ``origin``."""
    kind = _field_types()[key]
    text = isinstance(value, str)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if text and value.strip().lower() in {"1", "true", "yes", "on"}:
                return True
            if text and value.strip().lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError("expected a whole number")
            return int(value)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError("expected a number")
            return float(value)
        if kind == "Path":
            if not isinstance(value, str) or not value:
                raise ValueError("expected a path")
            return Path(value).expanduser()
        if kind == "str | None":
            if value is None or (text and value == ""):
                return None
            if not text:
                raise ValueError("expected a string")
            return value
        if not text:
            raise ValueError("expected a string")
        return value
    except ValueError as exc:
        raise ConfigError(f"{origin}: {key} = {value!r} is invalid ({exc})", hint=_hint(key)) from None


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} does not exist",
            hint="Create it, or drop --config / BRIDGE_CONFIG to use the default one.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read configuration file {path}: {exc}",
            hint="Give a UTF-8 TOML text file to --config / BRIDGE_CONFIG, or drop them to use the default one.",
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}", hint="Fix the line named above (TOML syntax: key = value)."
        ) from None
    table = raw.pop("bridge", {})
    if not isinstance(table, dict):
        raise ConfigError(
            f"{path}: [bridge] must be a table", hint="Write the keys under a [bridge] header, or at the top level."
        )
    merged = {**raw, **table}
    known = _field_types()
    values: dict[str, Any] = {}
    for key, value in merged.items():
        line = _line_of(text, key)
        origin = f"{path}, line {line}" if line else str(path)
        if key not in known:
            raise ConfigError(
                f"{origin}: unknown key {key!r}",
                hint="Known keys: " + ", ".join(sorted(known)) + ".",
            )
        values[key] = coerced = _coerce(key, value, origin=origin)
        problem = _problem(key, coerced)
        if problem:
            raise ConfigError(f"{origin}: {key} {problem}", hint=_hint(key))
    return values


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    known = _field_types()
    values: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("BRIDGE_") or name in _NOT_KEYS:
            continue
        key = name.removeprefix("BRIDGE_").lower()
        if key not in known:
            continue  # the CLI warns about these (unknown_env_vars)
        if value == "":
            continue  # set but empty means unset, for every key (as a shell's `BRIDGE_X= bridge ...` intends)
        origin = f"environment variable {name}"
        values[key] = coerced = _coerce(key, value, origin=origin)
        problem = _problem(key, coerced)
        if problem:
            raise ConfigError(f"{origin}: {key} {problem}", hint=_hint(key))
    return values


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def to_toml(config: BridgeConfig) -> str:
    """``config`` as a TOML file :func:`load_config` reads back to an equal configuration.

    Unset values (``server_url = None``) become comments, since TOML has no null.
    """
    lines = []
    for key, value in config.as_dict().items():
        if value is None:
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def trusted_server_urls(data_dir: Path) -> list[str]:
    """The URLs of the servers trusted in ``data_dir`` (by ``bridge trust``), sorted; unreadable entries skipped.

    Reads the trust store's layout (``servers/<host>-<hash>/server.json`` next to ``trusted-root.json``, see
    :mod:`bridge.source.trust`) without importing the network stack.
    """
    urls: set[str] = set()
    try:
        folders = sorted((data_dir / "servers").iterdir())
    except OSError:
        return []
    for folder in folders:
        try:
            if not (folder / "trusted-root.json").is_file():
                continue
            record = json.loads((folder / "server.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        url = record.get("url") if isinstance(record, dict) else None
        if isinstance(url, str) and re.match(r"^https?://\S+$", url):
            urls.add(url)
    return sorted(urls)


#: Every ``BRIDGE_*`` environment variable the tool reads: one per configuration key, plus the file and the radio.
KNOWN_ENV_VARS: tuple[str, ...] = tuple(
    sorted({"BRIDGE_CONFIG", "BRIDGE_HCI"} | {f"BRIDGE_{f.name.upper()}" for f in fields(BridgeConfig)})
)


def unknown_env_vars(env: Mapping[str, str]) -> list[str]:
    """``BRIDGE_*`` variables in ``env`` that nothing reads (typos such as ``BRIDGE_SERVER``), sorted."""
    known = set(KNOWN_ENV_VARS) | _NOT_KEYS
    return sorted(name for name in env if name.startswith("BRIDGE_") and name not in known)


def load_config(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BridgeConfig:
    """Defaults < TOML file < ``BRIDGE_*`` environment < ``overrides`` (flags).

    ``config_file`` None means ``BRIDGE_CONFIG`` from ``env`` if set, else the default file if it exists.
    ``env`` None means ``os.environ``. Raises :class:`ConfigError` naming the file, line and key at fault.
    """
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    if config_file is None and environ.get("BRIDGE_CONFIG"):
        config_file = environ["BRIDGE_CONFIG"]
    if config_file is not None:
        values.update(_read_file(Path(config_file).expanduser()))
    elif (default := default_config_file()).is_file():
        values.update(_read_file(default))
    values.update(_read_env(environ))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _field_types():
            raise ConfigError(f"unknown configuration key {key!r}")
        values[key] = Path(value).expanduser() if key == "data_dir" else value
    return BridgeConfig(**values)
