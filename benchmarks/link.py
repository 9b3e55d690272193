"""Deterministic BLE link model: connection events, LL fragmentation, ATT on top, on a virtual clock.

Theory of operation (``../shared/notes/ble-throughput.md`` §1.2 and §5.2):

* Time advances connection event by connection event, anchored at ``k * conn_interval_us``. Inside an event the
  central sends one LL PDU and the peripheral answers with one (data, or an empty PDU); a *pair* costs
  ``T(c) + T_IFS + T(p) + T_IFS``. The event goes on while either side has something ready (the MD bit), the
  next pair fits in the event and the per-event cap (phones) is not reached.
* An ATT PDU (write command, write request, write response, notification) becomes an L2CAP PDU of
  ``att + 4`` bytes and is cut into LL PDUs of at most ``ll_payload_max`` bytes; fragments of one write may span
  events. The receiver gets the ATT PDU when its last fragment has gone through.
* Link-layer ARQ: a central PDU that is lost (deterministic pattern, every n-th data PDU) or that finds every
  board ACL buffer taken (the board host has not consumed earlier PDUs) is not acknowledged and goes again in the
  next pair. This is how flash stalls and a slow board host push back on the link.
* The central host hands writes to its controller one after another, each costing ``host_write_latency_us``, and
  keeps at most ``controller_queue_writes`` ATT PDUs queued there. ATT allows one outstanding request: a write
  request holds back whatever the app queued after it until its response arrives. Notifications and write
  responses reach the central app ``host_rx_latency_us`` after their last fragment.
* The board host is one task: each complete ATT PDU costs ``proc_us``; before it is consumed the board app may
  refuse it (storage RAM full), which blocks the host, keeps its ACL buffers taken, and so NACKs the link.

Everything is integer microseconds and callbacks ordered by insertion: the same inputs give the same outputs.
"""

from __future__ import annotations

import enum
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from benchmarks.clock import SimulationError, VirtualClock

__all__ = [
    "ATT_VALUE_MAX",
    "T_IFS_US",
    "AttOp",
    "AttPdu",
    "BoardApp",
    "CentralApp",
    "Link",
    "LinkParams",
    "LinkStats",
    "Phy",
    "aligned_write_lengths",
    "packet_time_us",
]

T_IFS_US = 150
ATT_VALUE_MAX = 512  # Core spec: an attribute value is at most 512 bytes, whatever the MTU.
L2CAP_HEADER = 4
ATT_WRITE_HEADER = 3  # opcode + handle: write request, write command, notification


class Phy(enum.StrEnum):
    LE_1M = "1M"
    LE_2M = "2M"


def packet_time_us(phy: Phy, payload_len: int, *, encrypted: bool = False) -> int:
    """On-air time of one LL data PDU: preamble, access address, header, payload, MIC, CRC (§1.2)."""
    mic = 4 if encrypted and payload_len > 0 else 0
    if phy is Phy.LE_1M:
        return (1 + 4 + 2 + payload_len + mic + 3) * 8
    return (2 + 4 + 2 + payload_len + mic + 3) * 4


def aligned_write_lengths(att_mtu: int, ll_payload_max: int) -> list[int]:
    """Write value lengths whose L2CAP PDU fills whole LL PDUs (``k * dle - 7``), within the MTU and 512 B."""
    limit = min(att_mtu - ATT_WRITE_HEADER, ATT_VALUE_MAX)
    out = []
    k = 1
    while k * ll_payload_max - L2CAP_HEADER - ATT_WRITE_HEADER <= limit:
        out.append(k * ll_payload_max - L2CAP_HEADER - ATT_WRITE_HEADER)
        k += 1
    return out


class AttOp(enum.IntEnum):
    WRITE_CMD = 0x52
    WRITE_REQ = 0x12
    WRITE_RSP = 0x13
    NOTIFY = 0x1B


@dataclass(eq=False, slots=True)
class AttPdu:
    """One ATT PDU. ``value_len`` is what counts on air; ``meta`` is whatever the scheme needs (bytes, a tuple)."""

    op: AttOp
    char: str
    value_len: int
    meta: object = None

    @property
    def l2cap_len(self) -> int:
        att = 1 if self.op is AttOp.WRITE_RSP else ATT_WRITE_HEADER + self.value_len
        return att + L2CAP_HEADER


@dataclass(frozen=True)
class LinkParams:
    """Radio and central-host parameters of one profile (§5.1 of the throughput notes)."""

    phy: Phy
    conn_interval_us: int
    att_mtu: int
    ll_payload_max: int = 251
    max_pdus_per_event: int | None = None
    event_len_us: int | None = None
    encrypted: bool = False
    host_write_latency_us: int = 0
    host_rx_latency_us: int = 0
    controller_queue_writes: int = 8
    loss_every_n: int | None = None

    def __post_init__(self) -> None:
        if self.conn_interval_us % 1250 or not 7500 <= self.conn_interval_us <= 4_000_000:
            raise ValueError(f"connection interval {self.conn_interval_us} us: must be 7.5 ms..4 s in 1.25 ms steps")
        if not 23 <= self.att_mtu <= 517:
            raise ValueError(f"ATT MTU {self.att_mtu}: must be 23..517")
        if not 27 <= self.ll_payload_max <= 251:
            raise ValueError(f"LL payload {self.ll_payload_max}: must be 27..251")
        if self.max_pdus_per_event is not None and self.max_pdus_per_event < 1:
            raise ValueError("max_pdus_per_event must be >= 1 or None")
        if self.event_len_us is not None and not 0 < self.event_len_us <= self.conn_interval_us:
            raise ValueError("event_len_us must be within the connection interval")
        if self.controller_queue_writes < 1:
            raise ValueError("controller_queue_writes must be >= 1")
        if self.loss_every_n is not None and self.loss_every_n < 2:
            raise ValueError("loss_every_n must be >= 2 or None")

    @property
    def max_write_len(self) -> int:
        """Largest write value: MTU - 3, and never more than an attribute may hold."""
        return min(self.att_mtu - ATT_WRITE_HEADER, ATT_VALUE_MAX)


class CentralApp(Protocol):
    def on_notify(self, pdu: AttPdu) -> None: ...

    def on_write_rsp(self, request: AttPdu) -> None: ...


class BoardApp(Protocol):
    def accepts(self, pdu: AttPdu) -> bool: ...

    def on_write(self, pdu: AttPdu) -> None: ...


@dataclass
class LinkStats:
    events: int = 0
    pairs: int = 0
    central_data_pdus: int = 0
    peripheral_data_pdus: int = 0
    lost: int = 0
    nacked: int = 0
    air_busy_us: int = 0
    writes_delivered: int = 0
    notifications_delivered: int = 0
    max_board_acl_used: int = 0


@dataclass(eq=False)
class _Tx:
    pdu: AttPdu
    remaining: int


@dataclass(eq=False)
class _Rx:
    pdu: AttPdu
    fragments: int


class Link:
    """One connection between a central (the bridge) and a peripheral (the board), driven on ``clock``."""

    def __init__(
        self,
        clock: VirtualClock,
        params: LinkParams,
        *,
        board_proc_us: int,
        board_acl_buffers: int,
    ) -> None:
        if board_acl_buffers < 1:
            raise ValueError("board_acl_buffers must be >= 1")
        self.clock = clock
        self.params = params
        self.stats = LinkStats()
        self.board_proc_us = board_proc_us
        self.board_acl_buffers = board_acl_buffers
        self.central_app: CentralApp | None = None
        self.board_app: BoardApp | None = None
        # central side
        self._host_q: deque[AttPdu] = deque()
        self._host_busy = False
        self._req_outstanding = False
        self._c_ctrl: deque[_Tx] = deque()
        # peripheral side
        self._p_ctrl: deque[_Tx] = deque()
        self._acl_used = 0
        self._rx_frag_count = 0
        self._proc_q: deque[_Rx] = deque()
        self._proc_busy = False
        self._proc_blocked = False
        self._data_pdu_count = 0
        self._event_len = params.event_len_us or params.conn_interval_us
        self._cap = params.max_pdus_per_event or 1_000_000
        self._t_empty = packet_time_us(params.phy, 0, encrypted=params.encrypted)
        self._ptime = [packet_time_us(params.phy, n, encrypted=params.encrypted) for n in range(252)]

    # ------------------------------------------------------------------ central host

    def write(self, pdu: AttPdu) -> None:
        """The central app writes (command or request); queued in the host, FIFO."""
        if pdu.op not in (AttOp.WRITE_CMD, AttOp.WRITE_REQ):
            raise ValueError(f"the central writes commands or requests, not {pdu.op.name}")
        if pdu.value_len > self.params.max_write_len:
            raise ValueError(f"write of {pdu.value_len} B exceeds {self.params.max_write_len} B")
        self._host_q.append(pdu)
        self._pump_host()

    @property
    def central_queued_writes(self) -> int:
        """Writes the app handed over that have not been fully sent yet (host queue + controller)."""
        return len(self._host_q) + len(self._c_ctrl) + (1 if self._host_busy else 0)

    def _pump_host(self) -> None:
        p = self.params
        while self._host_q and not self._host_busy:
            if len(self._c_ctrl) >= p.controller_queue_writes:
                return
            pdu = self._host_q[0]
            if pdu.op is AttOp.WRITE_REQ:
                if self._req_outstanding:
                    return
                self._req_outstanding = True
            self._host_q.popleft()
            if p.host_write_latency_us > 0:
                self._host_busy = True
                self.clock.call_later(p.host_write_latency_us, functools.partial(self._handed_down, pdu))
                return
            self._c_ctrl.append(_Tx(pdu, pdu.l2cap_len))

    def _handed_down(self, pdu: AttPdu) -> None:
        self._host_busy = False
        self._c_ctrl.append(_Tx(pdu, pdu.l2cap_len))
        self._pump_host()

    def _central_receive(self, pdu: AttPdu) -> None:
        app = self.central_app
        assert app is not None
        if pdu.op is AttOp.WRITE_RSP:
            self._req_outstanding = False
            request = pdu.meta
            assert isinstance(request, AttPdu)
            app.on_write_rsp(request)
            self._pump_host()
        else:
            self.stats.notifications_delivered += 1
            app.on_notify(pdu)

    # ------------------------------------------------------------------ peripheral host

    def notify(self, char: str, value_len: int, meta: object = None) -> None:
        """The board app sends a notification now (its processing time has already been paid)."""
        if value_len > min(self.params.att_mtu - ATT_WRITE_HEADER, ATT_VALUE_MAX):
            raise ValueError(f"notification of {value_len} B exceeds the MTU")
        pdu = AttPdu(AttOp.NOTIFY, char, value_len, meta)
        self._p_ctrl.append(_Tx(pdu, pdu.l2cap_len))

    def board_retry(self) -> None:
        """The board app has room again (storage drained): unblock the host task."""
        if self._proc_blocked:
            self._proc_blocked = False
            self._process_board()

    def _board_arrive(self, rx: _Rx) -> None:
        self._proc_q.append(rx)
        self._process_board()

    def _process_board(self) -> None:
        if self._proc_busy or self._proc_blocked or not self._proc_q:
            return
        self._proc_busy = True
        self.clock.call_later(self.board_proc_us, self._board_processed)

    def _board_processed(self) -> None:
        app = self.board_app
        assert app is not None
        rx = self._proc_q[0]
        if not app.accepts(rx.pdu):
            self._proc_busy = False
            self._proc_blocked = True
            return
        self._proc_q.popleft()
        self._acl_used -= rx.fragments
        self.stats.writes_delivered += 1
        app.on_write(rx.pdu)
        if rx.pdu.op is AttOp.WRITE_REQ:
            rsp = AttPdu(AttOp.WRITE_RSP, rx.pdu.char, 0, rx.pdu)
            self._p_ctrl.append(_Tx(rsp, rsp.l2cap_len))
        self._proc_busy = False
        self._process_board()

    # ------------------------------------------------------------------ radio

    def run(self, done: Callable[[], bool], *, limit_us: int) -> None:
        """Run connection events until ``done()`` or ``limit_us`` of virtual time."""
        clock = self.clock
        ci = self.params.conn_interval_us
        anchor = -(-clock.now_us // ci) * ci
        while not done():
            clock.run_until(anchor)
            if done():
                return
            if anchor > limit_us:
                raise SimulationError(f"no completion within {limit_us / 1e6:.1f} s of virtual time")
            if not self._c_ctrl and not self._p_ctrl:
                nxt = clock.next_due_us()
                if nxt is None:
                    raise SimulationError("deadlock: nothing queued on the link and nothing scheduled")
                anchor = max(anchor + ci, -(-nxt // ci) * ci)
                continue
            self._event(anchor)
            anchor += ci

    def _event(self, anchor: int) -> None:
        clock = self.clock
        stats = self.stats
        dle = self.params.ll_payload_max
        ptime = self._ptime
        used = 0
        pairs = 0
        stats.events += 1
        while pairs < self._cap:
            now = anchor + used
            clock.run_until(now)
            c = self._c_ctrl[0] if self._c_ctrl else None
            p = self._p_ctrl[0] if self._p_ctrl else None
            if c is None and p is None:
                break
            c_len = min(dle, c.remaining) if c is not None else 0
            p_len = min(dle, p.remaining) if p is not None else 0
            t_c = ptime[c_len]
            t_p = ptime[p_len]
            dur = t_c + T_IFS_US + t_p + T_IFS_US
            if used + dur > self._event_len:
                break
            if c is not None:
                self._central_tx(c, c_len, now + t_c)
            if p is not None:
                self._peripheral_tx(p, p_len, now + t_c + T_IFS_US + t_p)
            stats.air_busy_us += dur
            used += dur
            pairs += 1
        stats.pairs += pairs

    def _central_tx(self, tx: _Tx, n: int, t_rx: int) -> None:
        stats = self.stats
        stats.central_data_pdus += 1
        self._data_pdu_count += 1
        every = self.params.loss_every_n
        if every is not None and self._data_pdu_count % every == 0:
            stats.lost += 1
            return
        if self._acl_used >= self.board_acl_buffers:
            stats.nacked += 1
            return
        self._acl_used += 1
        stats.max_board_acl_used = max(stats.max_board_acl_used, self._acl_used)
        self._rx_frag_count += 1
        tx.remaining -= n
        if tx.remaining == 0:
            self._c_ctrl.popleft()
            rx = _Rx(tx.pdu, self._rx_frag_count)
            self._rx_frag_count = 0
            self.clock.call_at(t_rx, functools.partial(self._board_arrive, rx))
            self._pump_host()

    def _peripheral_tx(self, tx: _Tx, n: int, t_rx: int) -> None:
        self.stats.peripheral_data_pdus += 1
        tx.remaining -= n
        if tx.remaining == 0:
            self._p_ctrl.popleft()
            pdu = tx.pdu
            self.clock.call_at(t_rx + self.params.host_rx_latency_us, functools.partial(self._central_receive, pdu))
