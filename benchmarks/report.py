"""Render ``Results`` as the console table and as ``benchmarks/README.md`` (Markdown)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from benchmarks.board import EraseMode
from benchmarks.harness import ANCHOR_CONFIG, KIB, SHIPPED, WINDOW_ENOUGH, Results, Row, Target
from benchmarks.link import Phy
from benchmarks.profiles import PROFILES
from benchmarks.wallclock import WallClock

__all__ = ["console_table", "markdown_report"]

AHEAD = EraseMode.BLOCK_AHEAD.value
SCHEME_ORDER = (
    "ours",
    "ours-shipped-defaults",
    "espressif-ble-ota",
    "espressif-ble-ota-w3",
    "smp-1",
    "smp-1-buf2475",
    "nordic-dfu-prn12",
)


def _kib(bps: float) -> str:
    return f"{bps / KIB:.1f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _sorted(rows: Iterable[Row]) -> list[Row]:
    order = {s: i for i, s in enumerate(SCHEME_ORDER)}
    boards = {m.value: i for i, m in enumerate(EraseMode)}
    return sorted(rows, key=lambda r: (r.profile, boards.get(r.board, 9), order.get(r.scheme, 99)))


def console_table(results: Results) -> str:
    """The main table: every profile, scheme and board strategy."""
    lines = [
        f"{'prof':4} {'board':16} {'scheme':22} {'goodput KiB/s':>13} {'capacity':>9} {'eff':>7} "
        f"{'R_flash':>8} {'eff_board':>9} {'time s':>7}",
    ]
    for r in _sorted(results.rows):
        lines.append(
            f"{r.profile:4} {r.board:16} {r.scheme:22} {_kib(r.goodput_bytes_per_s):>13} "
            f"{_kib(r.capacity_bytes_per_s):>9} {_pct(r.efficiency):>7} {_kib(r.flash_bound_bytes_per_s):>8} "
            f"{_pct(r.board_efficiency):>9} {r.duration_s:>7.2f}"
        )
    lines.append("")
    lines.append(f"ours = {results.recommended.describe()}")
    lines.append(f"ours-shipped-defaults = {SHIPPED.describe()}")
    if results.targets:
        lines.append("")
        for t in results.targets:
            mark = "MET   " if t.met else "MISSED"
            value = f"{t.measured:.2f}x" if t.required.endswith("x") else _pct(t.measured)
            lines.append(f"{mark} ({t.profile}) {t.name:34} {t.required:>8}  measured {value}")
    return "\n".join(lines)


def _target_cells(t: Target, results: Results) -> list[str]:
    value = f"{t.measured:.2f}x" if t.required.endswith("x") else _pct(t.measured)
    return [f"({t.profile})", t.name, t.required, value, "met" if t.met else "**missed**", _why(t, results)]


def _row_for(results: Results, profile: str, scheme: str, board: str = AHEAD) -> Row:
    for r in results.rows:
        if (r.profile, r.scheme, r.board) == (profile, scheme, board):
            return r
    raise KeyError((profile, scheme, board))


def _why(t: Target, results: Results) -> str:
    if t.met:
        return ""
    ours = _row_for(results, t.profile, "ours")
    if t.name.startswith("vs "):
        anchor = _row_for(results, t.profile, t.name[3:])
        ceiling = anchor.capacity_bytes_per_s / anchor.goodput_bytes_per_s
        if ceiling < t.threshold:
            return (
                f"unreachable here: the anchor already gets {_pct(anchor.efficiency)} of the link, so even a protocol "
                f"at 100 % of capacity would be {ceiling:.2f}x"
            )
        if anchor.scheme == "espressif-ble-ota-w3":
            params = PROFILES[t.profile].link
            ours_share = (params.max_write_len - 6) / params.max_write_len
            esp_share = (params.max_write_len - 3) / params.max_write_len * 4096 / 4098
            return (
                f"both are link-bound; the difference is framing: our data frame carries "
                f"{params.max_write_len - 6} of {params.max_write_len} B ({_pct(ours_share)}), Espressif's packet "
                f"{params.max_write_len - 3} B less 2 B CRC per 4 KB ({_pct(esp_share)})"
            )
        return f"ours reaches {_pct(ours.efficiency)} of the link"
    return f"see the sweeps: ours reaches {_pct(ours.efficiency)} with {results.recommended.describe()}"


def _sweep_eff(results: Results, knob: str, profile: str, value: int) -> float | None:
    for p in results.sweeps:
        if (p.knob, p.profile, p.value) == (knob, profile, value):
            return p.efficiency
    return None


def _recommendations(results: Results) -> list[str]:
    """What the data says the protocol's defaults should be (for the protocol owner; nothing is changed here)."""
    rec = results.recommended
    keys = results.settings.profiles
    out = ["## What the sweeps recommend", ""]

    def effs(knob: str, value: int) -> str:
        cells = []
        for k in keys:
            e = _sweep_eff(results, knob, k, value)
            if e is not None:
                cells.append(f"({k}) {_pct(e)}")
        return ", ".join(cells)

    if rec.window_bytes != SHIPPED.window_bytes:
        out.append(
            f"- **Board window: {rec.window_bytes // KIB} KiB instead of {SHIPPED.window_bytes // KIB} KiB** "
            f"(`protocol.reference.ReferenceBoard`, `bridge.sim.SimBoardConfig.window_bytes`; SPEC.md §6.2 says "
            "'typically 16-64 KB': the data says at least this much for an erase-ahead board on 2M). "
            f"{SHIPPED.window_bytes // KIB} KiB: {effs('window_bytes', SHIPPED.window_bytes)}; "
            f"{rec.window_bytes // KIB} KiB: {effs('window_bytes', rec.window_bytes)}. The window must cover the "
            "ACK round trip (ACKs mean 'in flash' and ride the next connection event) plus a 64 KB block erase "
            "(150 ms of data at the link rate, ~24 KiB on 2M) plus one ACK interval."
        )
    else:
        kept = effs("window_bytes", rec.window_bytes)
        out.append(f"- Board window: keep {SHIPPED.window_bytes // KIB} KiB ({kept}).")
    if rec.frame_policy == "aligned":
        out.append(
            "- **Frame size: keep writes that fill whole LL packets (495 or 244 B)**, as "
            "`bridge.ble.link.choose_frame_bytes` does; plain MTU-3 writes cost "
            f"{effs('frame_bytes', 253)} at 253 B and {effs('frame_bytes', 512)} at 512 B "
            "(a 7-19 B runt LL PDU per write)."
        )
    else:
        out.append("- Frame size: MTU-3 writes were best in most profiles.")
    ack = "window/4 (the protocol default)" if rec.ack_interval_bytes is None else f"{rec.ack_interval_bytes} B"
    out.append(f"- ACK interval: {ack}; the sweep found no value better by more than 1 % everywhere.")
    out.append(
        "- Frame overhead: 6 B per frame (offset u32 + CRC-16) is the only thing between us and Espressif's "
        "3-sector window in (c), where both are link-bound; a 4-B frame would tie. Dropping the per-frame CRC is "
        "not recommended (it catches host-stack corruption such as the NimBLE mbuf-chain bug fixed in "
        "esp-iot-solution#502 before the bytes reach flash); the 1 % is the price."
    )
    return out


def markdown_report(results: Results, wallclock: WallClock, *, command: str) -> str:
    s = results.settings
    keys = s.profiles
    out: list[str] = []
    add = out.append
    add("# Performance: protocol efficiency against the link and against the anchors")
    add("")
    add(
        f"Generated by `{command}` (deterministic: the same command gives the same numbers; "
        f"this run took {results.elapsed_s:.0f} s for the model, image {s.image_bytes // KIB} KiB). "
        "`python -m benchmarks.run --json` prints the same figures as JSON. Do not edit by hand."
    )
    add("")
    add("## Summary")
    add("")
    missed = [t for t in results.targets if not t.met]
    add(f"Our protocol ({results.recommended.describe()}), erase-ahead board:")
    add("")
    header = ["profile", "capacity KiB/s", "ours KiB/s", "efficiency"]
    header += ["vs espressif stop-and-wait", "vs espressif 3 in flight", "vs SMP 1 in flight", "vs Nordic PRN 12"]
    summary = []
    for key in keys:
        ours = _row_for(results, key, "ours")
        cells = [f"({key}) {PROFILES[key].name}", _kib(ours.capacity_bytes_per_s), _kib(ours.goodput_bytes_per_s)]
        cells.append(_pct(ours.efficiency))
        for anchor in ("espressif-ble-ota", "espressif-ble-ota-w3", "smp-1", "nordic-dfu-prn12"):
            other = _row_for(results, key, anchor)
            cells.append(f"{ours.goodput_bytes_per_s / other.goodput_bytes_per_s:.2f}x")
        summary.append(cells)
    out += _table(header, summary)
    add("")
    if results.targets:
        add(f"Targets: {len(results.targets) - len(missed)} of {len(results.targets)} met.")
        add("")
        out += _table(
            ["profile", "target", "required", "measured", "", "why"],
            (_target_cells(t, results) for t in results.targets),
        )
        add("")
    if results.targets_shipped:
        shipped_missed = [t for t in results.targets_shipped if not t.met]
        add(
            f"With the defaults the code ships today ({SHIPPED.describe()}): "
            f"{len(results.targets_shipped) - len(shipped_missed)} of {len(results.targets_shipped)} met; missed: "
            + (
                "; ".join(
                    f"({t.profile}) {t.name} "
                    + (f"{t.measured:.2f}x" if t.required.endswith("x") else _pct(t.measured))
                    for t in shipped_missed
                )
                or "none"
            )
            + ". The sweeps below show why and which defaults to change."
        )
        add("")

    add("## Method")
    add("")
    add(
        "**A link model, not a Bumble link.** `benchmarks/link.py` is an event-driven model on a virtual clock in "
        "integer microseconds (no randomness): connection events anchored every interval; in each event "
        "central/peripheral PDU pairs of `T(c) + 150 + T(p) + 150` µs while either side has data, the pair fits "
        "in the event and the per-event cap allows; ATT writes and notifications become L2CAP PDUs (`+4`) cut "
        "into LL PDUs of at most the data length; LL ARQ re-sends a PDU that is lost (deterministic pattern) or "
        "that finds the board's ACL buffers full (the board host or its flash is behind). The central host pays "
        "a latency per write and per received notification and keeps a bounded controller queue; ATT allows one "
        "outstanding request. The board host spends a fixed time per PDU; its storage is a RAM buffer in front of "
        "a flash that must be erased before it is programmed, one operation at a time (`benchmarks/board.py`). "
        "Formulas and the algorithm: `notes/ble-throughput.md` §1.2 and §5."
    )
    add("")
    add(
        "Why not a Bumble link with timing: Bumble's `LocalLink` has no radio timing, and a timed variant runs "
        "the whole asyncio + bleak + Bumble stack for every point of every sweep; it measures Python overhead as "
        "much as the protocol. The model instead drives **the protocol's real sans-I/O objects** "
        "(`protocol.BridgeConnection` and `protocol.BoardConnection`, `benchmarks/ours.py`): every control write, "
        "data frame (offset u32, payload, CRC-16) and ACK/NACK on the simulated air is the bytes those objects "
        "produced, and their window and ACK policy decide when things go. The whole run takes seconds and "
        "repeats to the microsecond. Bumble is used where Python cost is the question: the wall-clock section."
    )
    add("")
    add(
        "**Measured interval.** From the first command of the transfer (BEGIN, START, first SMP request, SET PRN) "
        "to the moment the last byte is in flash *and* the sender has been told so (FINISH_OK, the ACK of STOP, "
        "the last SMP response, the last Execute response). Connection set-up, MTU exchange, HELLO/INFO and the "
        "image's final verification on the board are outside it for every scheme. Goodput = image bytes / "
        "interval. **Capacity** = the same simulator with an infinite backlog of write commands, no app acks, "
        "no flash (board consumes instantly), best of `MTU-3` and every length that fills whole LL PDUs "
        "(`k*DLE-7`). Efficiency = goodput / capacity; `eff_board` = goodput / min(capacity, R_flash), where "
        "R_flash is what the flash sustains under that erase strategy."
    )
    add("")
    add(
        "**Same board for everyone.** Every scheme runs on the same simulated ESP32: the same host time per PDU, "
        "24 ACL buffers, the same flash and erase strategy; the anchors keep their own buffer sizes and ack "
        "points (Espressif: ACK when the sector is in its ring buffer; SMP: answer after the chunk is in flash; "
        "Nordic: PRN on receipt, Execute after flash; ours: ACK after flash, as SPEC.md says). Every anchor "
        "gets its most favourable bleak-side client: data as write-without-response with the largest write the "
        "MTU allows (at most 512 B)."
    )
    add("")

    add("## Profiles")
    add("")
    prof_rows = []
    for key in keys:
        p = PROFILES[key]
        lp = p.link
        prof_rows.append(
            [
                f"({key}) {p.name}",
                "1M" if lp.phy is Phy.LE_1M else "2M",
                f"{lp.conn_interval_us / 1000:g} ms",
                str(lp.att_mtu),
                str(lp.ll_payload_max),
                str(lp.max_pdus_per_event or "none"),
                f"{lp.host_write_latency_us / 1000:g} / {lp.host_rx_latency_us / 1000:g} ms",
                str(lp.controller_queue_writes),
            ]
        )
    out += _table(
        ["profile", "PHY", "CI", "ATT MTU", "DLE", "PDUs/event", "host write / rx latency", "write queue"], prof_rows
    )
    add("")
    add("Where the numbers come from:")
    add("")
    for key in keys:
        p = PROFILES[key]
        add(f"- ({key}) {p.name}:")
        for src in p.sources:
            add(f"  - {src}")
    add(
        "- Board (all profiles): host 1 ms per ATT PDU, 24 ACL buffers (NimBLE `BT_NIMBLE_ACL_BUF_COUNT`), flash "
        "program 754 000 B/s (ESP-IDF CI threshold for 2 KB writes on ESP32), 4 KB sector erase 65 ms (from the "
        "45.3 KB/s erase threshold, mid-range), 64 KB block erase 150 ms (**assumption**: typical SPI NOR, not "
        "measured on an ESP32 module) — `notes/ble-throughput.md` §4.3 and §5.1."
    )
    add("")
    add("Capacity per write length (KiB/s) and flash-bound rates:")
    add("")
    cap_rows = []
    for key in keys:
        c = results.capacities[key]
        per_len = ", ".join(f"{n} B: {_kib(v)}" for n, v in sorted(c.by_write_len.items()))
        cap_rows.append([f"({key})", _kib(c.bytes_per_s), f"{c.bytes_per_s * 8 / 1000:.0f}", str(c.write_len), per_len])
    out += _table(["profile", "capacity KiB/s", "kbit/s", "best write", "by write length"], cap_rows)
    add("")
    out += _table(
        ["erase strategy", "R_flash KiB/s"],
        ([mode, _kib(rate)] for mode, rate in results.flash_rates.items()),
    )
    add("")

    add("## All schemes, all board strategies")
    add("")
    add(
        "`sequential-4k` = `esp_ota_begin(OTA_WITH_SEQUENTIAL_WRITES)` (erase each 4 KB sector as the cursor "
        "reaches it); `erase-all-first` = `esp_ota_begin(image_size)` before answering; `erase-ahead-64k` = "
        "erase 64 KB blocks ahead of the cursor whenever the flash is idle (the board the targets assume)."
    )
    add("")
    main_rows = [
        [
            f"({r.profile})",
            r.board,
            r.scheme,
            _kib(r.goodput_bytes_per_s),
            _pct(r.efficiency),
            _pct(r.board_efficiency),
            f"{r.duration_s:.2f}",
            f"{r.max_in_flight_bytes / KIB:.1f} KiB",
            f"{r.max_board_ram_bytes / KIB:.1f} KiB",
        ]
        for r in _sorted(results.rows)
    ]
    out += _table(
        ["profile", "board", "scheme", "goodput KiB/s", "efficiency", "eff_board", "time s", "in flight", "board RAM"],
        main_rows,
    )
    add("")
    add("Schemes:")
    add("")
    add(f"- `ours`: {results.recommended.describe()} (chosen by the sweeps below).")
    add(
        f"- `ours-shipped-defaults`: {SHIPPED.describe()} (what `protocol.reference.ReferenceBoard` and a bridge "
        "passing bleak's `max_write_without_response_size` do today)."
    )
    for scheme, text in ANCHOR_CONFIG.items():
        add(f"- `{scheme}`: {text}.")
    add("")

    if results.sweeps:
        add("## Sweeps that choose our defaults")
        add("")
        add(
            "All on the erase-ahead board. (1) frame size at a 64 KiB window; (2) window with the best frame "
            f"size: the default is the smallest window reaching {WINDOW_ENOUGH:.0%} of the best in every "
            "profile; (3) ACK interval at that window (kept at the protocol's window/4 unless another value is "
            "better by > 1 % somewhere and worse nowhere)."
        )
        add("")
        for knob, title in (
            ("frame_bytes", "Frame (write) size"),
            ("window_bytes", "Window"),
            ("ack_interval_bytes", "ACK interval"),
        ):
            pts = [p for p in results.sweeps if p.knob == knob]
            values = sorted({p.value for p in pts})
            header = [title] + [f"({k}) eff" for k in keys]
            table_rows = []
            for v in values:
                cells = [f"{v} B" if knob == "frame_bytes" else f"{v / KIB:g} KiB"]
                for k in keys:
                    match = [p for p in pts if p.profile == k and p.value == v]
                    cells.append(_pct(match[0].efficiency) if match else "")
                table_rows.append(cells)
            add(f"**{title}**")
            add("")
            out += _table(header, table_rows)
            add("")

    if results.sweeps:
        out += _recommendations(results)
        add("")

    if results.sensitivity:
        add("## Sensitivity (erase-ahead board, capacity recomputed for each variant)")
        add("")
        sens_rows = [
            [
                f"({r.profile}) {r.config}",
                r.scheme,
                _kib(r.capacity_bytes_per_s),
                _kib(r.goodput_bytes_per_s),
                _pct(r.efficiency),
            ]
            for r in results.sensitivity
        ]
        out += _table(["variant", "scheme", "capacity KiB/s", "goodput KiB/s", "efficiency"], sens_rows)
        add("")

    if results.memory:
        add("## Memory bounded by the window, not by the image")
        add("")
        mem_rows = [
            [
                f"({r.profile}) {r.config}",
                _kib(r.goodput_bytes_per_s),
                _pct(r.efficiency),
                f"{r.max_in_flight_bytes} B",
                f"{r.max_board_ram_bytes} B",
            ]
            for r in results.memory
        ]
        out += _table(["image", "goodput KiB/s", "efficiency", "max in flight (bridge)", "max board RAM"], mem_rows)
        add("")
        add(
            "In the model the bridge never has more than the window unacknowledged and the board never buffers "
            "more than the window, whatever the image size (efficiency rises with size because the fixed "
            "BEGIN/FINISH round trips weigh less). Process memory of the real product path is in the next section."
        )
        add("")

    out += wallclock.markdown()
    add("")
    add("## Caveats")
    add("")
    add(
        "- The model is an upper bound for every scheme alike: no controller scheduling gaps, no channel-map "
        "retransmissions beyond the deterministic loss pattern, no Wi-Fi coexistence, event length = interval.\n"
        "- On a real ESP32 a flash erase or program stalls tasks that run from flash (cache disabled); the model "
        "lets the BLE host run during flash operations. A board that keeps its BLE host in IRAM behaves like the "
        "model; one that does not sees longer ACK delays, which a larger window absorbs and stop-and-wait "
        "schemes do not.\n"
        "- The 64 KB block-erase time (150 ms) is an assumption; the erase-ahead results depend on it (R_flash).\n"
        "- Host latencies are assumptions that are small against one write's air time; they do not decide any "
        "result in these profiles.\n"
        "- The iPhone profile assumes a client that paces with `canSendWriteWithoutResponse`; bleak's "
        "CoreBluetooth backend does not (notes §3.2), and a queue overflow there drops writes silently: our "
        "protocol would then see gaps and NACK/resend, the anchors' stop-and-wait would not notice."
    )
    return "\n".join(out) + "\n"
