"""The public surface of ``protocol`` and its purity (stdlib only, no I/O)."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

import protocol

PROTOCOL_DIR = Path(protocol.__file__).resolve().parent
#: What the protocol package may import: pure standard-library modules.
ALLOWED_IMPORTS = {
    "__future__",
    "binascii",
    "collections",
    "dataclasses",
    "enum",
    "hashlib",
    "json",
    "logging",
    "random",
    "re",
    "struct",
    "sys",
    "types",
    "typing",
    "pathlib",
    "zlib",
    "protocol",
}


def test_all_is_sorted_complete_and_importable() -> None:
    names = protocol.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(protocol, name), name
    public = {
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public == set(names)
    upper = [n for n in names if n.isupper()]
    assert upper == sorted(upper)


@pytest.mark.parametrize("path", sorted(PROTOCOL_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_protocol_imports_only_pure_stdlib(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED_IMPORTS, f"{path.name} imports {sorted(imported - ALLOWED_IMPORTS)}"


def test_importing_protocol_pulls_no_io_library() -> None:
    banned = {"asyncio", "bleak", "bumble", "httpx", "typer", "rich", "cryptography", "socket"}
    code = (
        "import sys, protocol, protocol.reference; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(banned)!r}))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
