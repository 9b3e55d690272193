"""OTA Bridge: update ESP32 firmware over Bluetooth LE, relaying between a board and an update server.

Importing ``bridge`` is cheap and safe inside a Kivy app: it never imports typer, rich or bumble, and it pulls
bleak, httpx and python-tuf only when a :class:`Bridge` first needs them.

::

    import bridge

    async with bridge.Bridge(bridge.load_config()) as b:
        for advert in await b.scan():
            status = await b.status(advert.address)
            if status.state is bridge.UpdateState.OUTDATED:
                async for event in b.sync(advert.address):
                    print(event)
"""

from __future__ import annotations

from bridge.api import BoardStatus, Bridge, UpdateState, exit_code_for_status
from bridge.config import BridgeConfig, load_config
from bridge.errors import (
    BoardNotFoundError,
    BoardRejectedError,
    BoardTimeoutError,
    BridgeError,
    ConfigError,
    DisconnectedError,
    DownloadError,
    ExitCode,
    ImageError,
    PreflightError,
    ProtocolViolationError,
    RepositoryError,
    RolledBackError,
    SecurityError,
    SourceError,
    TransportError,
    TrustError,
    UpdateFailedError,
    UsageError,
)
from bridge.events import (
    Checking,
    Committing,
    Confirmed,
    Connecting,
    Downloading,
    EventStream,
    Finishing,
    Notice,
    Rebooting,
    Reconnecting,
    RolledBack,
    SyncEvent,
    Uploading,
    UpToDate,
    Verified,
    event_to_dict,
)
from bridge.journal import AttemptResult, Journal, JournalEntry

__version__ = "0.1.0"

__all__ = [
    "AttemptResult",
    "BoardNotFoundError",
    "BoardRejectedError",
    "BoardStatus",
    "BoardTimeoutError",
    "Bridge",
    "BridgeConfig",
    "BridgeError",
    "Checking",
    "Committing",
    "ConfigError",
    "Confirmed",
    "Connecting",
    "DisconnectedError",
    "DownloadError",
    "Downloading",
    "EventStream",
    "ExitCode",
    "Finishing",
    "ImageError",
    "Journal",
    "JournalEntry",
    "Notice",
    "PreflightError",
    "ProtocolViolationError",
    "Rebooting",
    "Reconnecting",
    "RepositoryError",
    "RolledBack",
    "RolledBackError",
    "SecurityError",
    "SourceError",
    "SyncEvent",
    "TransportError",
    "TrustError",
    "UpToDate",
    "UpdateFailedError",
    "UpdateState",
    "Uploading",
    "UsageError",
    "Verified",
    "__version__",
    "event_to_dict",
    "exit_code_for_status",
    "load_config",
]
