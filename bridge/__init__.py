"""OTA Bridge: update ESP32 firmware over Bluetooth LE, relaying between a board and an update server.

Importing ``bridge`` is cheap and safe inside a Kivy app: it never imports typer, rich or bumble.
"""

from __future__ import annotations

from bridge.errors import BridgeError, ExitCode

__version__ = "0.1.0"

__all__ = ["BridgeError", "ExitCode", "__version__"]
