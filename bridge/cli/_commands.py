"""The list of command modules. Each module exposes ``register(app)`` and adds its commands or sub-apps."""

from __future__ import annotations

import importlib

import typer

#: In the order `bridge --help` shows them.
COMMAND_MODULES = (
    "bridge.cli.update_cmds",  # scan, status, sync, push, fetch, log, demo, config (issue 6)
    "bridge.cli.image_cmds",  # image info (issue 3)
    "bridge.cli.repo_cmds",  # repo ..., trust (issue 5)
    "bridge.cli.sim_cmds",  # sim (issue 4)
)


def register_all(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
