"""Reference profiles (a), (b), (c) and where each number comes from.

Radio numbers are those of ``../shared/notes/ble-throughput.md`` §5.3; host latencies are assumptions (flagged)
that are small against the air time of one write, so they do not decide any result; the board defaults are §5.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.link import LinkParams, Phy

__all__ = ["PROFILES", "Profile"]


@dataclass(frozen=True)
class Profile:
    key: str
    name: str
    link: LinkParams
    sources: tuple[str, ...]


PROFILES: dict[str, Profile] = {
    "a": Profile(
        key="a",
        name="laptop BlueZ + ESP32",
        link=LinkParams(
            phy=Phy.LE_1M,
            conn_interval_us=45_000,
            att_mtu=256,
            ll_payload_max=251,
            max_pdus_per_event=None,
            host_write_latency_us=100,
            host_rx_latency_us=1000,
            controller_queue_writes=64,
        ),
        sources=(
            "1M PHY: the original ESP32 is a 4.2 controller without LE 2M "
            "(docs.espressif.com .../esp32/api-guides/ble/ble-feature-support-status.html)",
            "CI 45 ms: the Linux kernel proposes 30-50 ms and 45 ms was chosen in a BlueZ 5.72 trace "
            "(github.com/bluez/bluez/issues/847; net/bluetooth/hci_core.c le_conn_min/max_interval)",
            "MTU 256: BlueZ asks 517, NimBLE's BT_NIMBLE_ATT_PREFERRED_MTU default is 256 "
            "(esp-idf components/bt/host/nimble/Kconfig.in; bluez src/main.conf)",
            "DLE 251: the kernel sets the controller maximum (net/bluetooth/hci_sync.c)",
            "no per-event cap (controller-limited, unknown)",
            "host write latency 0.1 ms: ble-serial#89 handed 1 MB of 20-B writes to BlueZ in < 4 s (<= 80 us each); "
            "writes queue without back-pressure (controller queue 64 stands for 'unbounded')",
            "host rx latency 1 ms per notification through D-Bus: assumption",
        ),
    ),
    "b": Profile(
        key="b",
        name="Android + ESP32-S3",
        link=LinkParams(
            phy=Phy.LE_2M,
            conn_interval_us=15_000,
            att_mtu=517,
            ll_payload_max=251,
            max_pdus_per_event=None,
            host_write_latency_us=1000,
            host_rx_latency_us=1000,
            controller_queue_writes=8,
        ),
        sources=(
            "2M PHY: ESP32-S3 supports it and auto-negotiates (esp-idf s3 ble-feature-support-status; "
            "esphome#9968); Android API 26+ setPreferredPhy",
            "CI 15 ms: CONNECTION_PRIORITY_HIGH = 11.25-15 ms (AOSP packages/apps/Bluetooth config.xml)",
            "MTU 517: Android 14 requests 517 on the first requestMtu; the S3 firmware sets preferred MTU 517",
            "DLE 251: Android 6+",
            "no per-event cap (novelbits: ~6 on some phones; sensitivity row in the report)",
            "host write latency 1 ms per awaited bleak write (JNI/Binder round trip): assumption; the Android "
            "stack queues writes and calls back 'when half of the queue is empty' (Nordic DFU library docs), "
            "modelled as a controller queue of 8 writes",
            "host rx latency 1 ms: assumption",
        ),
    ),
    "c": Profile(
        key="c",
        name="iPhone + ESP32",
        link=LinkParams(
            phy=Phy.LE_1M,
            conn_interval_us=30_000,
            att_mtu=185,
            ll_payload_max=251,
            max_pdus_per_event=6,
            host_write_latency_us=100,
            host_rx_latency_us=1000,
            controller_queue_writes=20,
        ),
        sources=(
            "1M PHY: ESP32 (no 2M)",
            "CI 30 ms: Apple's rules ask for multiples of 15 ms; 15 ms 'may be scaled to 30 ms' "
            "(Apple accessory design guidelines via novelbits.io/ble-throughput-calculator)",
            "MTU 185: iOS 10+ (github.com/chrisc11/ble-guides/blob/master/ios-mtu.md)",
            "DLE 251: iPhone 7+",
            "6 packets per connection event: novelbits calculator (iOS ~4-7)",
            "write queue of ~20 before CoreBluetooth drops silently (openradar 20394802): modelled as a queue of 20 "
            "that blocks, i.e. a client that paces with canSendWriteWithoutResponse",
            "host write latency 0.1 ms, rx latency 1 ms: assumptions",
        ),
    ),
}
