"""Stage 1: the release engineer's side of the update server (``bridge repo ...``).

A repository is a folder whose ``public/`` sub-folder is a static TUF repository any web host can serve; the
private keys stay beside it in ``keys/``. Layout, key handling and the release rules: docs/SERVER.md.

::

    repo = Repository("fw-repo")
    repo.init()                                   # keys + signed metadata; prints nothing, returns the fingerprint
    repo.add("build/blinky.bin", channel="stable")
    repo.confirm("blinky", "1.1.0")               # release number 1 on "stable"
    with serve_repository("fw-repo") as url: ...  # development HTTP server with ETag/304 and Range
"""

from __future__ import annotations

from bridge.repo.repository import (
    ExpiryPolicy,
    InitResult,
    PrunedRelease,
    RefreshResult,
    RepoEntry,
    Repository,
    StagedRelease,
)
from bridge.repo.server import RepositoryHTTPServer, ServedURL, make_server, serve_repository, served_root

__all__ = [
    "ExpiryPolicy",
    "InitResult",
    "PrunedRelease",
    "RefreshResult",
    "RepoEntry",
    "Repository",
    "RepositoryHTTPServer",
    "ServedURL",
    "StagedRelease",
    "make_server",
    "serve_repository",
    "served_root",
]
