"""The production BLE link (bleak) over the Bumble backend on virtual controllers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from bridge.ble import (
    BoardLink,
    GattError,
    HciBackend,
    LinkClosedError,
    OsBackend,
    backend_from_hci,
    choose_frame_bytes,
    find_board,
    scan,
)
from bridge.ble.link import translate
from bridge.errors import (
    BoardNotFoundError,
    BoardTimeoutError,
    DisconnectedError,
    ExitCode,
    ProtocolViolationError,
    TransportError,
    UsageError,
)
from bridge.sim.world import VirtualWorld
from protocol.gatt import SERVICE_UUID

from .peripheral import add_peripheral


async def test_scan_lists_only_ota_boards_with_rssi_and_name(world: VirtualWorld) -> None:
    board_a = await add_peripheral(world, "OTA-A")
    board_b = await add_peripheral(world, "OTA-B")
    await add_peripheral(world, "HRM", ota_service=False)

    adverts = await scan(world.backend, timeout_s=0.3)

    assert sorted(a.name or "" for a in adverts) == ["OTA-A", "OTA-B"]
    by_name = {a.name: a for a in adverts}
    assert by_name["OTA-A"].address == board_a.address
    assert by_name["OTA-B"].address == board_b.address
    assert all(a.rssi == -50 for a in adverts)  # what Bumble's virtual controller reports
    assert all(a.service_uuids == (SERVICE_UUID,) for a in adverts)
    assert by_name["OTA-A"].as_dict()["ota_service"] is True


async def test_scan_by_name_returns_at_first_match(world: VirtualWorld) -> None:
    await add_peripheral(world, "OTA-A")
    wanted = await add_peripheral(world, "OTA-B")

    started = time.monotonic()
    adverts = await scan(world.backend, timeout_s=5.0, name="ota-b")

    assert [a.address for a in adverts] == [wanted.address]
    assert time.monotonic() - started < 1.0


async def test_scan_by_name_also_finds_a_device_without_the_service_uuid(world: VirtualWorld) -> None:
    other = await add_peripheral(world, "HRM", ota_service=False)
    adverts = await scan(world.backend, timeout_s=1.0, address=other.address)
    assert [(a.address, a.has_ota_service) for a in adverts] == [(other.address, False)]


async def test_find_board_that_is_absent_raises_board_not_found(world: VirtualWorld) -> None:
    await add_peripheral(world, "OTA-A")
    with pytest.raises(BoardNotFoundError) as info:
        await find_board(world.backend, name="OTA-Z", timeout_s=0.2)
    assert info.value.exit_code == ExitCode.BOARD_NOT_FOUND
    assert "OTA-Z" in info.value.message


async def test_connect_by_scan_result_name_and_address(world: VirtualWorld) -> None:
    peripheral = await add_peripheral(world, "OTA-A")
    [advert] = await scan(world.backend, timeout_s=0.3)

    for target in (advert, "OTA-A", peripheral.address):
        link = await BoardLink.connect(target, backend=world.backend, timeout_s=2)
        assert link.is_connected
        assert link.address == peripheral.address
        await link.close()
        assert not link.is_connected


async def test_commands_and_notifications_round_trip_in_order(world: VirtualWorld) -> None:
    peripheral = await add_peripheral(world, "OTA-A")
    peripheral.reply = lambda value: [value + b"-1", value + b"-2"]
    async with await BoardLink.connect("OTA-A", backend=world.backend) as link:
        for i in range(20):
            await link.write_control(b"cmd%d" % i)
        replies = [await link.recv_control(timeout_s=1) for _ in range(40)]
    assert peripheral.commands == [b"cmd%d" % i for i in range(20)]
    assert replies == [b"cmd%d-%d" % (i, k) for i in range(20) for k in (1, 2)]


async def test_frames_are_495_bytes_on_a_517_mtu_link_and_all_arrive_in_order(world: VirtualWorld) -> None:
    peripheral = await add_peripheral(world, "OTA-A")
    payload = bytes(range(256)) * 800  # 204,800 bytes
    async with await BoardLink.connect("OTA-A", backend=world.backend) as link:
        assert link.mtu_size == 517
        assert link.max_write_bytes == 495
        for offset in range(0, len(payload), link.max_write_bytes):
            await link.write_data(payload[offset : offset + link.max_write_bytes])
        await link.write_control(b"sync")  # ATT requests queue behind earlier commands: all frames are in
        assert await link.recv_control(timeout_s=1) == b"echo:sync"
        assert link.data_bytes_written == len(payload)
    assert b"".join(peripheral.frames) == payload
    assert {len(f) for f in peripheral.frames[:-1]} == {495}


@pytest.mark.parametrize(("server_mtu", "expected"), [(247, 244), (185, 182), (23, 20)])
async def test_frame_size_follows_the_negotiated_mtu(world: VirtualWorld, server_mtu: int, expected: int) -> None:
    await add_peripheral(world, "OTA-A", max_mtu=server_mtu)
    async with await BoardLink.connect("OTA-A", backend=world.backend) as link:
        assert link.max_write_bytes == expected
        with pytest.raises(ValueError, match="exceeds"):
            await link.write_data(bytes(expected + 1))


@pytest.mark.parametrize(
    ("allowance", "limit", "expected"),
    [
        (514, None, 495),
        (512, None, 495),
        (495, None, 495),
        (494, None, 244),
        (300, None, 244),
        (244, None, 244),
        (243, None, 243),
        (20, None, 20),
        (514, 400, 244),
        (514, 200, 200),
        (1000, None, 495),
    ],
)
def test_choose_frame_bytes(allowance: int, limit: int | None, expected: int) -> None:
    assert choose_frame_bytes(allowance, limit=limit) == expected


def test_choose_frame_bytes_refuses_less_than_the_att_minimum() -> None:
    with pytest.raises(ValueError, match="below the ATT minimum"):
        choose_frame_bytes(514, limit=10)


async def test_a_dropped_link_ends_a_long_wait_at_once(world: VirtualWorld) -> None:
    peripheral = await add_peripheral(world, "OTA-A")
    peripheral.disconnect_after_commands = 1
    link = await BoardLink.connect("OTA-A", backend=world.backend)
    await link.write_control(b"bye")
    assert await link.recv_control(timeout_s=1) == b"echo:bye"  # sent before the drop: still delivered
    started = time.monotonic()
    with pytest.raises(DisconnectedError):
        await link.recv_control(timeout_s=30)
    assert time.monotonic() - started < 1.0
    assert not link.is_connected
    with pytest.raises(DisconnectedError):
        await link.write_data(b"x" * 20)
    assert await link.wait_disconnected(timeout_s=0.1) is True
    await link.close()


async def test_silence_raises_board_timeout_after_the_given_time(world: VirtualWorld) -> None:
    peripheral = await add_peripheral(world, "OTA-A")
    peripheral.reply = lambda value: []
    async with await BoardLink.connect("OTA-A", backend=world.backend) as link:
        await link.write_control(b"anyone?")
        started = time.monotonic()
        with pytest.raises(BoardTimeoutError) as info:
            await link.recv_control(timeout_s=0.2)
        assert 0.15 < time.monotonic() - started < 1.0
        assert isinstance(info.value, TimeoutError)
        assert link.is_connected


async def test_att_error_on_a_command_becomes_gatt_error(world: VirtualWorld) -> None:
    peripheral = await add_peripheral(world, "OTA-A")
    peripheral.att_error = 0x80  # first application error code
    async with await BoardLink.connect("OTA-A", backend=world.backend) as link:
        with pytest.raises(GattError) as info:
            await link.write_control(b"nope")
    assert info.value.att_code == 0x80
    assert info.value.exit_code == ExitCode.LINK_FAILED


async def test_a_device_without_the_ota_service_is_refused_without_retrying(world: VirtualWorld) -> None:
    other = await add_peripheral(world, "HRM", ota_service=False)
    with pytest.raises(ProtocolViolationError, match="no OTA Bridge service"):
        await BoardLink.connect(other.address, backend=world.backend, retries=3, retry_delay_s=5)


async def test_connecting_to_nobody_fails_within_the_bounded_attempts(world: VirtualWorld) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        await BoardLink.connect(
            "C0:0A:7A:00:FF:FF", backend=world.backend, timeout_s=0.3, retries=1, retry_delay_s=0.1, scan_timeout_s=0.5
        )
    # An address that no scan sees fails after that one scan, without connect attempts (new-user item 14).
    assert isinstance(info.value, BoardNotFoundError)
    assert "C0:0A:7A:00:FF:FF" in info.value.message
    assert time.monotonic() - started < 2.0


async def test_a_closed_link_refuses_io(world: VirtualWorld) -> None:
    await add_peripheral(world, "OTA-A")
    link = await BoardLink.connect("OTA-A", backend=world.backend)
    await link.close()
    await link.close()  # idempotent
    with pytest.raises(LinkClosedError):
        await link.write_control(b"late")


def test_bleak_errors_are_translated_at_the_boundary() -> None:
    gatt = translate(BleakGATTProtocolError(0x0D), "writing")
    assert isinstance(gatt, GattError) and gatt.att_code == 0x0D
    assert isinstance(translate(BleakDeviceNotFoundError("AA"), "x"), BoardNotFoundError)
    assert isinstance(translate(BleakError("Not connected"), "x"), DisconnectedError)
    assert isinstance(translate(TimeoutError(), "x"), BoardTimeoutError)
    other = translate(BleakError("org.bluez.Error.Failed"), "scanning")
    assert type(other) is TransportError and other.message == "scanning: org.bluez.Error.Failed"


def test_backend_from_hci() -> None:
    assert isinstance(backend_from_hci(None), OsBackend)
    assert isinstance(backend_from_hci("  "), OsBackend)
    backend = backend_from_hci("tcp-client:127.0.0.1:9")
    assert isinstance(backend, HciBackend) and backend.spec == "tcp-client:127.0.0.1:9"
    with pytest.raises(UsageError, match="unknown HCI transport"):
        backend_from_hci("bogus:1")


async def test_an_hci_transport_with_nothing_behind_it_is_a_transport_error() -> None:
    backend = backend_from_hci("tcp-client:127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(TransportError) as info:
        await scan(backend, timeout_s=0.2)
    assert "tcp-client:127.0.0.1:9" in info.value.message
    assert "bridge sim" in info.value.hint
    await backend.aclose()


def test_import_bridge_ble_does_not_import_bumble() -> None:
    code = "import sys, bridge.ble; print(sorted(m for m in sys.modules if m.split('.')[0] == 'bumble'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_scan_with_a_bad_timeout_is_a_programming_error(world: VirtualWorld) -> None:
    with pytest.raises(ValueError, match="positive"):
        await scan(world.backend, timeout_s=0)
    await asyncio.sleep(0)


async def test_the_same_code_reaches_a_board_through_an_hci_transport(world: VirtualWorld) -> None:
    """``--hci tcp-client:...``: a second Bumble host on a real socket, as another process would use it."""
    peripheral = await add_peripheral(world, "OTA-A")
    host, port = await world.expose_hci()
    backend = backend_from_hci(f"tcp-client:{host}:{port}")
    async with backend:
        assert not backend.is_virtual
        [advert] = await scan(backend, timeout_s=0.5)
        assert (advert.name, advert.address) == ("OTA-A", peripheral.address)
        async with await BoardLink.connect(advert, backend=backend) as link:
            await link.write_control(b"over tcp")
            assert await link.recv_control(timeout_s=2) == b"echo:over tcp"
            assert link.max_write_bytes == 495
    assert peripheral.commands == [b"over tcp"]
