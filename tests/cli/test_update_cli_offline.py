"""CLI behaviour that needs no board: configuration, the journal, refusals before any connection."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.errors import ExitCode
from bridge.journal import AttemptResult, Journal, JournalEntry
from tests.cli.conftest import Cli
from tests.conftest import firmware_file


def test_config_show_reports_file_env_and_defaults(cli: Cli) -> None:
    cli.config_file.write_text('server_url = "http://127.0.0.1:9/repo"\nack_timeout_s = 4\n', encoding="utf-8")
    code, out, _ = cli("config", "show", "--json", env={"BRIDGE_ACK_TIMEOUT_S": "6.5"})
    assert code == 0
    shown = json.loads(out)
    assert shown["config_file"] == str(cli.config_file)
    assert shown["server_url"] == "http://127.0.0.1:9/repo"
    assert shown["ack_timeout_s"] == 6.5  # the environment beats the file
    assert shown["data_dir"] == str(cli.data_dir)
    assert shown["reboot_timeout_s"] == 90.0  # default


def test_config_show_human(cli: Cli) -> None:
    code, out, _ = cli("config", "show")
    assert code == 0
    assert f'data_dir = "{cli.data_dir}"' in out  # TOML: double-quoted strings


def test_malformed_config_exits_10_naming_file_line_and_key(cli: Cli) -> None:
    cli.config_file.write_text('channel = "beta"\nreconnect_attempts = "lots"\n', encoding="utf-8")
    code, _, err = cli("status", "AA:BB:CC:DD:EE:FF")
    assert code == ExitCode.CONFIG
    assert f"{cli.config_file}, line 2" in err
    assert "reconnect_attempts" in err
    assert "Traceback" not in err


def test_log_lists_attempts_newest_last(cli: Cli) -> None:
    code, out, _ = cli("log")
    assert code == 0 and "no update attempts recorded yet" in out
    journal = Journal(cli.data_dir / "journal.jsonl")
    journal.append(
        JournalEntry(
            board="AA:01",
            result=AttemptResult.CONFIRMED,
            from_version="1",
            to_version="2",
            bytes_sent=134_512,
            duration_s=3.2,
        )
    )
    journal.append(
        JournalEntry(
            board="AA:02", result=AttemptResult.ROLLED_BACK, from_version="2", to_version="3", error="self-test failed"
        )
    )
    code, out, _ = cli("log", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [e["board"] for e in entries] == ["AA:01", "AA:02"]
    assert entries[0]["bytes_sent"] == 134_512 and entries[1]["result"] == "rolled_back"
    code, out, _ = cli("log", "-n", "1")
    assert code == 0
    assert "AA:02" in out and "AA:01" not in out and "self-test failed" in out


def test_push_refuses_a_partition_table_before_any_connection(cli: Cli, firmware: Path) -> None:
    # The board address is never contacted: the OS Bluetooth stack is not even opened for a refused file.
    code, _, err = cli("push", "AA:BB:CC:DD:EE:FF", str(firmware_file(firmware, "N01")))
    assert code == ExitCode.REFUSED
    assert "partition table" in err.lower()
    entries = list(Journal(cli.data_dir / "journal.jsonl").entries())
    assert len(entries) == 1 and entries[0].result is AttemptResult.REFUSED


def test_push_of_a_missing_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("push", "AA:BB:CC:DD:EE:FF", str(tmp_path / "nope.bin"))
    assert code == ExitCode.USAGE  # a typo, like `bridge image info`: not a refused image
    assert f"{tmp_path / 'nope.bin'}: no such file." in err


def test_sync_without_a_server_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli("sync", "AA:BB:CC:DD:EE:FF", "--yes")
    assert code == ExitCode.USAGE
    assert "no update server configured: set server_url in config.toml or BRIDGE_SERVER_URL" in err


def test_sync_board_and_all_together_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli("sync", "AA:BB:CC:DD:EE:FF", "--all", "--yes")
    assert code == ExitCode.USAGE
    assert "not both" in err
