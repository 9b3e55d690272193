"""The package's shape: import costs, the public surface, the CLI entry points."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_bridge_pulls_no_cli_or_simulator_modules() -> None:
    code = (
        "import sys, bridge; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'typer', 'rich', 'bumble', 'click'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


BANNED_IN_PROTOCOL = {"asyncio", "bleak", "bumble", "httpx", "typer", "rich", "cryptography", "trio", "socket"}


@pytest.mark.parametrize("path", sorted((ROOT / "protocol").rglob("*.py")), ids=lambda p: p.name)
def test_protocol_is_sans_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & BANNED_IN_PROTOCOL, f"{path.name} imports {imported & BANNED_IN_PROTOCOL}"


def test_cli_help_runs_and_names_the_main_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "--help"], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "Update ESP32 firmware over Bluetooth LE" in out.stdout
