"""A Kivy app around the async API: check a board, update it with a progress bar, cancel safely.

Run (Kivy is not a dependency of ota-bridge; install it yourself)::

    pip install kivy 'ota-bridge'
    python examples/kivy_app/main.py [BOARD]          # BOARD: address or name; default: the strongest in range

Kivy 2.x runs on the asyncio loop (``App.async_run``), so the bridge's coroutines and async generators are used
directly: no threads, no callbacks. ``bridge.sync`` yields typed events that drive the label and the progress bar;
Cancel cancels the task, and the bridge tells the board to abort (it keeps its current firmware).
On Android, grant the Bluetooth permissions (BLUETOOTH_SCAN, BLUETOOTH_CONNECT, ACCESS_FINE_LOCATION) first.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from kivy.app import App
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.progressbar import ProgressBar

import bridge


class UpdaterApp(App):  # type: ignore[misc]
    """One screen: status line, progress bar, Check / Update / Cancel."""

    def __init__(self, board: str | None, config: bridge.BridgeConfig) -> None:
        super().__init__()
        self.board = board
        self.bridge = bridge.Bridge(config)
        self.task: asyncio.Task[None] | None = None

    def build(self) -> BoxLayout:
        root = BoxLayout(orientation="vertical", padding=16, spacing=12)
        self.status = Label(text="Press Check to look for the board.", halign="center")
        self.progress = ProgressBar(max=100, value=0)
        buttons = BoxLayout(size_hint_y=0.3, spacing=12)
        self.check_button = Button(text="Check", on_press=lambda *_: self.start(self.check()))
        self.update_button = Button(text="Update", disabled=True, on_press=lambda *_: self.start(self.update()))
        self.cancel_button = Button(text="Cancel", disabled=True, on_press=lambda *_: self.cancel())
        for button in (self.check_button, self.update_button, self.cancel_button):
            buttons.add_widget(button)
        root.add_widget(self.status)
        root.add_widget(self.progress)
        root.add_widget(buttons)
        return root

    # -- tasks --------------------------------------------------------------------------------------------

    def start(self, job: Coroutine[Any, Any, None]) -> None:
        if self.task is not None and not self.task.done():
            job.close()  # one job at a time
            return
        self.task = asyncio.create_task(job)
        self.cancel_button.disabled = False

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def check(self) -> None:
        try:
            if self.board is None:
                self.status.text = "Scanning..."
                adverts = await self.bridge.scan()
                if not adverts:
                    self.status.text = "No board in range."
                    return
                self.board = adverts[0].address
            self.status.text = f"Asking {self.board}..."
            status = await self.bridge.status(self.board)
            self.status.text = status.summary()
            self.update_button.disabled = status.state is not bridge.UpdateState.OUTDATED
        except bridge.BridgeError as exc:
            self.status.text = f"{exc.message}\n{exc.hint}"
        finally:
            self.cancel_button.disabled = True

    async def update(self) -> None:
        assert self.board is not None
        self.update_button.disabled = self.check_button.disabled = True
        try:
            async for event in self.bridge.sync(self.board):
                self.show(event)
        except asyncio.CancelledError:
            self.status.text = "Cancelled: the board was told to abort and keeps its firmware."
        except bridge.BridgeError as exc:
            self.status.text = f"Update failed: {exc.message}\n{exc.hint}"
        finally:
            self.check_button.disabled = False
            self.cancel_button.disabled = True

    def show(self, event: bridge.SyncEvent) -> None:
        if isinstance(event, bridge.Downloading) and event.total_bytes:
            self.progress.value = 100 * event.done_bytes / event.total_bytes
            self.status.text = str(event)
        elif isinstance(event, bridge.Uploading):
            self.progress.value = 100 * event.acked_bytes / event.total_bytes
            eta = f", {event.eta_s:.0f} s left" if event.eta_s is not None else ""
            self.status.text = f"Uploading {event.rate_bps / 1024:.1f} KiB/s{eta}"
        else:
            self.status.text = str(event)

    def on_stop(self) -> None:
        self.cancel()


async def main() -> None:
    board = sys.argv[1] if len(sys.argv) > 1 else None
    app = UpdaterApp(board, bridge.load_config())
    try:
        await app.async_run(async_lib="asyncio")
    finally:
        await app.bridge.aclose()


if __name__ == "__main__":
    asyncio.run(main())
