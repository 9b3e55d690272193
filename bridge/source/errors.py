"""Precise leaves of :mod:`bridge.errors` for the update source.

Callers usually catch the families from :mod:`bridge.errors`; the leaves let a UI and the tests say exactly what
went wrong::

    SourceError
    ├── DownloadError
    │   ├── ServerUnreachableError     DNS, refused connection, network down
    │   ├── TLSError                   certificate or handshake failure
    │   ├── ServerTimeoutError         no answer in time, or a transfer slower than the overall deadline
    │   ├── HTTPStatusError            an HTTP status other than 200 (``status_code``)
    │   └── DownloadTooLargeError      more bytes than the signed metadata or a configured cap allows
    ├── TrustError
    │   ├── NotTrustedError            no root stored for this server (`bridge trust` first)
    │   └── WrongRootError             the server's root is not the one that was trusted
    │       └── RootFingerprintError   (also a SecurityError, exit 6) the root's SHA-256 is not the one given
    ├── SecurityError                  (exit 6) nothing from this answer is used
    │   ├── BadSignatureError          metadata not signed by the keys the trusted root names
    │   ├── TamperedError              a file's length or SHA-256 differs from signed metadata, or it does not parse
    │   ├── RollbackError              metadata older than what this bridge has already seen
    │   ├── ExpiredMetadataError       signed metadata past its expiry (a frozen or abandoned server)
    │   ├── MalformedReleaseError      signed release facts with a wrong type or range
    │   └── ImageMismatchError         the verified file is not the image the release claims (project, chip, ...)
    ├── StaleCacheError                offline: the cached release was verified longer ago than allowed
    └── ReleaseGoneError               the release is no longer listed by the server
"""

from __future__ import annotations

from bridge.errors import DownloadError, SecurityError, SourceError, TrustError

__all__ = [
    "BadSignatureError",
    "DownloadTooLargeError",
    "ExpiredMetadataError",
    "HTTPStatusError",
    "ImageMismatchError",
    "MalformedReleaseError",
    "NotTrustedError",
    "ReleaseGoneError",
    "RollbackError",
    "RootFingerprintError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "StaleCacheError",
    "TLSError",
    "TamperedError",
    "WrongRootError",
]


class ServerUnreachableError(DownloadError):
    pass


class TLSError(DownloadError):
    default_hint = (
        "The server's TLS certificate could not be verified: check the URL and the system time; "
        "for a private CA set SourceConfig.verify_tls to its bundle."
    )


class ServerTimeoutError(DownloadError):
    pass


class HTTPStatusError(DownloadError):
    """The server answered with ``status_code`` instead of the file."""

    def __init__(self, message: str, *, status_code: int, url: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.url = url


class DownloadTooLargeError(DownloadError):
    default_hint = "The server sent more than it signed for; tell the release engineer. Nothing was kept."


class NotTrustedError(TrustError):
    pass


class WrongRootError(TrustError):
    default_hint = (
        "The server is signed by other keys than the root you trusted: check the URL, or, if the release "
        "engineer re-initialised the repository, run `bridge trust URL --root root.json --replace`."
    )


class RootFingerprintError(WrongRootError, SecurityError):
    """`bridge trust --fingerprint`: the root file is not the one the release engineer named (exit 6: refused).

    A :class:`WrongRootError` for callers that catch trust problems, and a :class:`SecurityError` because the
    file must not be trusted: it may have been swapped on the way.
    """

    default_hint = "Ask the release engineer for the fingerprint `bridge repo init` printed, and check the URL."


class BadSignatureError(SecurityError):
    pass


class TamperedError(SecurityError):
    pass


class RollbackError(SecurityError):
    pass


class ExpiredMetadataError(SecurityError):
    default_hint = (
        "The server's signed metadata has expired: the release engineer must run `bridge repo refresh`. "
        "Until then nothing from this server is installed."
    )


class MalformedReleaseError(SecurityError):
    pass


class ImageMismatchError(SecurityError):
    pass


class StaleCacheError(SourceError):
    default_hint = "Go online and run `bridge fetch` again to re-verify the cached firmware."


class ReleaseGoneError(SourceError):
    default_hint = "The release was pruned or withdrawn on the server; check again for the newest one."
