"""BridgeConfig: precedence (defaults < file < env < flags) and errors that name the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import BridgeConfig, load_config
from bridge.errors import ConfigError, ExitCode


def test_defaults_have_units_and_are_positive(tmp_path: Path) -> None:
    config = load_config(env={"BRIDGE_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    assert config.data_dir == tmp_path
    assert config.journal_file == tmp_path / "journal.jsonl"
    assert config.reboot_timeout_s == 90.0
    assert config.server_url is None


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'server_url = "http://file.example/repo"\nconnect_timeout_s = 3\nchannel = "beta"\n'
        "[bridge]\nreconnect_attempts = 9\n",
        encoding="utf-8",
    )
    env = {"BRIDGE_CONNECT_TIMEOUT_S": "4.5", "BRIDGE_DATA_DIR": str(tmp_path / "data"), "BRIDGE_HCI": "usb:0"}
    config = load_config(path, env=env, overrides={"channel": "dev", "server_url": None})
    assert config.server_url == "http://file.example/repo"  # file (flag None = not given)
    assert config.connect_timeout_s == 4.5  # env beats file
    assert config.channel == "dev"  # flag beats file
    assert config.reconnect_attempts == 9  # from the [bridge] table
    assert config.data_dir == tmp_path / "data"


def test_bridge_config_env_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("scan_timeout_s = 1.5\n", encoding="utf-8")
    assert load_config(env={"BRIDGE_CONFIG": str(path)}).scan_timeout_s == 1.5


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('channel = "beta"\nconnect_timeout_s = = 3\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in info.value.message
    assert "line 2" in info.value.message
    assert info.value.exit_code == ExitCode.CONFIG


def test_wrong_type_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('channel = "beta"\n\nconnect_timeout_s = "soon"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert f"{path}, line 3" in info.value.message
    assert "connect_timeout_s" in info.value.message


def test_negative_timeout_in_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("reboot_timeout_s = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 1: reboot_timeout_s must be a positive number"):
        load_config(path, env={})


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("conect_timeout_s = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 1: unknown key 'conect_timeout_s'") as info:
        load_config(path, env={})
    assert "connect_timeout_s" in info.value.hint


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="environment variable BRIDGE_RECONNECT_ATTEMPTS"):
        load_config(env={"BRIDGE_RECONNECT_ATTEMPTS": "many"})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_constructor_validates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server_url"):
        BridgeConfig(data_dir=tmp_path, server_url="ftp://x")
    with pytest.raises(ConfigError, match="max_window_bytes"):
        BridgeConfig(data_dir=tmp_path, max_window_bytes=100)
    config = BridgeConfig(data_dir=tmp_path)
    assert config.replace(ack_timeout_s=2).ack_timeout_s == 2
    assert config.as_dict()["data_dir"] == str(tmp_path)
