"""The bridge's one exception tree.

Everything the library raises on purpose is a :class:`BridgeError`; third-party exceptions (bleak, bumble,
httpx, tuf, OS errors) are translated where they enter, with ``raise ... from exc``, so an application catches
only these types. Each class carries an :class:`ExitCode` that the CLI uses as its process exit status, and a
``hint``: one sentence telling a person what to do next.

::

    BridgeError
    ├── UsageError                      bad flags, bad config file, unknown board name        (exit 2 / 10)
    │   └── ConfigError
    ├── ImageError                      the firmware file is not an app image we may push        (exit 6)
    ├── SourceError                     the update server                                        (exit 9)
    │   ├── DownloadError               HTTP / TLS / timeout / size cap
    │   ├── TrustError                  no trusted root, wrong root key
    │   └── SecurityError               bad signature, tampered file, rolled-back or expired metadata (exit 6)
    ├── RepositoryError                 `bridge repo` (release engineer side)                   (exit 11)
    ├── TransportError                  the BLE link                                            (exit 5)
    │   ├── BoardNotFoundError          nothing answered the scan                               (exit 4)
    │   ├── DisconnectedError           the link dropped while we waited
    │   └── BoardTimeoutError           the board did not answer in time (also a TimeoutError)
    ├── ProtocolViolationError          the board broke the wire protocol                       (exit 7)
    ├── BoardRejectedError              the board answered with an error code (busy, low battery, ...) (exit 7)
    ├── UpdateFailedError               the update did not complete                             (exit 7)
    │   └── RolledBackError             the board came back on the old version                  (exit 8)
    └── PreflightError                  the image does not fit this board (chip, size, secure_version) (exit 6)

Modules that need a more precise leaf subclass one of these in their own file.
"""

from __future__ import annotations

from enum import IntEnum, unique

__all__ = [
    "BoardNotFoundError",
    "BoardRejectedError",
    "BoardTimeoutError",
    "BridgeError",
    "ConfigError",
    "DisconnectedError",
    "DownloadError",
    "ExitCode",
    "ImageError",
    "PreflightError",
    "ProtocolViolationError",
    "RepositoryError",
    "RolledBackError",
    "SecurityError",
    "SourceError",
    "TransportError",
    "TrustError",
    "UpdateFailedError",
    "UsageError",
]


@unique
class ExitCode(IntEnum):
    """Process exit status of every ``bridge`` command (documented in the README)."""

    OK = 0
    """Done: updated and confirmed, or nothing to do."""
    INTERNAL = 1
    """A bug: please report it with the output of ``--debug``."""
    USAGE = 2
    """Bad command line."""
    UPDATE_AVAILABLE = 3
    """``status`` / ``sync --dry-run``: a newer release exists for the board (outdated)."""
    BOARD_NOT_FOUND = 4
    """No board answered the scan, or the named board is not in range."""
    LINK_FAILED = 5
    """The BLE link failed (could not connect, dropped and did not come back)."""
    REFUSED = 6
    """The image or metadata was refused by verification before any byte went to the board."""
    UPDATE_FAILED = 7
    """The board refused or failed the update; it still runs its previous firmware."""
    ROLLED_BACK = 8
    """The new firmware was written but the board came back on the old version."""
    SERVER = 9
    """The update server could not be reached or answered wrongly."""
    CONFIG = 10
    """The configuration file or an environment variable is invalid."""
    REPOSITORY = 11
    """``bridge repo``: the repository could not be changed as asked."""
    INTERRUPTED = 130
    """Ctrl-C: the board was told to abort; nothing half-written is kept."""


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class UsageError(BridgeError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    exit_code = ExitCode.CONFIG


class ImageError(BridgeError):
    """A firmware file that must not be pushed. ``code`` names the reason (see ``bridge.image``)."""

    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, *, code: str = "invalid", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class PreflightError(BridgeError):
    """The image is fine but not for this board (chip, partition size, secure_version, project)."""

    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, *, code: str = "preflight", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class SourceError(BridgeError):
    exit_code = ExitCode.SERVER


class DownloadError(SourceError):
    default_hint = "Check the server URL and the network, then try again; partial downloads resume."


class TrustError(SourceError):
    default_hint = "Run `bridge trust URL --root root.json` with the root file from your release engineer."


class SecurityError(SourceError):
    """Verification refused what the server sent: nothing from it is used."""

    exit_code = ExitCode.REFUSED
    default_hint = "Do not install this release; tell the release engineer the server refused verification."


class RepositoryError(BridgeError):
    exit_code = ExitCode.REPOSITORY


class TransportError(BridgeError):
    exit_code = ExitCode.LINK_FAILED
    default_hint = "Move closer to the board, check it is powered and advertising, then run the command again."


class BoardNotFoundError(TransportError):
    exit_code = ExitCode.BOARD_NOT_FOUND
    default_hint = "Check the board is powered and in range; `bridge scan` lists the boards it can see."


class DisconnectedError(TransportError):
    pass


class BoardTimeoutError(TransportError, TimeoutError):
    pass


class ProtocolViolationError(BridgeError):
    exit_code = ExitCode.UPDATE_FAILED


class BoardRejectedError(BridgeError):
    """The board answered with an error code; ``code`` is the wire error code (``protocol.ErrorCode``)."""

    exit_code = ExitCode.UPDATE_FAILED

    def __init__(self, message: str, *, code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class UpdateFailedError(BridgeError):
    exit_code = ExitCode.UPDATE_FAILED


class RolledBackError(UpdateFailedError):
    exit_code = ExitCode.ROLLED_BACK
