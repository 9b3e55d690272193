"""The conversation state machine, as data.

Theory of operation
-------------------
Both roles walk the *same* table. The state is the state of the conversation ("BEGIN sent, no answer yet" is
``BEGIN`` on both sides), and every control message moves it along the table whether you sent it or received
it. That gives the two rules h11 uses:

1. Everything that decides which message may come next lives in this file (``TRANSITIONS``). The connection
   classes only add *what to do* (flow control, timers), never *whether* a message is allowed.
2. The table does not know which role we play. ``SENDER`` says who may send each message type, so a bridge
   cannot "send" INFO and a board cannot "receive" INFO, but the transitions are shared. The per-role tables
   and diagrams in SPEC.md are renderings of this one table (``render_table`` / ``render_mermaid``); a test
   keeps SPEC.md in step with it.

Data frames are not control messages: they are only valid in ``TRANSFER`` and never change the state. ACK,
NACK and SYNC are self-loops in ``TRANSFER``. Every ERROR from the board ends whatever was going on: back to
``READY`` (``START`` before INFO).

Notifications can cross a command on the air (the board sent them before it processed the command). These races
are fixed rules next to the table, not table entries, so the table stays the same for both roles:

1. UPDATE_REQUEST crossing a command: the board already moved to ``UPDATE_REQUESTED``, so that state accepts
   every command ``READY`` accepts (the request is withdrawn). The bridge ignores an UPDATE_REQUEST that
   arrives in any state but ``READY``.
2. ACK / NACK crossing BEGIN, FINISH or ABORT: the bridge ignores ACK and NACK outside ``TRANSFER``.
3. A reply crossing ABORT (BEGIN_OK, FINISH_OK, ... sent before the board saw the ABORT): from sending ABORT
   until sending its next command, the bridge ignores every notification the table does not allow. ATT keeps
   order, and the bridge waits for ABORT's write response before it writes again, so nothing stale can arrive
   after that.
4. An unsolicited ERROR crossing a command: the board answers the command with ERROR(BAD_STATE) from
   ``READY``; the bridge, already in ``READY``, takes the second ERROR as a self-loop.
"""

from __future__ import annotations

import enum
from typing import Final

from protocol.constants import MessageType

__all__ = [
    "SENDER",
    "TRANSITIONS",
    "Role",
    "State",
    "next_state",
    "render_mermaid",
    "render_table",
]


class Role(enum.Enum):
    """Who plays which side. The bridge is the GATT client, the board the GATT server."""

    BRIDGE = "bridge"
    BOARD = "board"


class State(enum.Enum):
    """Conversation states (not on the wire)."""

    #: Connected; nothing said yet.
    START = "START"
    #: HELLO sent; waiting for INFO.
    HELLO = "HELLO"
    #: INFO exchanged; no operation in progress.
    READY = "READY"
    #: The board asked for an update; waiting for UPDATE_AVAILABLE / NO_UPDATE.
    UPDATE_REQUESTED = "UPDATE_REQUESTED"
    #: The bridge offered an update; waiting for UPDATE_ACCEPT / ERROR.
    OFFERED = "OFFERED"
    #: BEGIN sent; the board checks and erases; waiting for BEGIN_OK.
    BEGIN = "BEGIN"
    #: Data frames flow; ACK / NACK / SYNC.
    TRANSFER = "TRANSFER"
    #: FINISH sent; the board verifies; waiting for FINISH_OK.
    FINISH = "FINISH"
    #: The image is complete and verified, not yet the boot partition.
    VERIFIED = "VERIFIED"
    #: COMMIT sent; waiting for COMMIT_OK.
    COMMIT = "COMMIT"
    #: The new image is the boot partition.
    COMMITTED = "COMMITTED"
    #: REBOOT sent; waiting for REBOOT_OK.
    REBOOT = "REBOOT"
    #: The board is restarting; the connection is over.
    CLOSED = "CLOSED"
    #: This side detected a fatal protocol error; only disconnecting is left (not part of the table).
    ERROR = "ERROR"


M = MessageType
S = State

#: Who may send each message type.
SENDER: Final[dict[MessageType, Role]] = {t: (Role.BOARD if t & 0x80 else Role.BRIDGE) for t in MessageType}

_READY_COMMANDS: Final[dict[MessageType, State]] = {
    M.HELLO: S.HELLO,
    M.BEGIN: S.BEGIN,
    M.REBOOT: S.REBOOT,
    M.ABORT: S.READY,
}

#: state -> message type -> next state. A message type missing from a state's row is not allowed there.
TRANSITIONS: Final[dict[State, dict[MessageType, State]]] = {
    S.START: {M.HELLO: S.HELLO, M.ERROR: S.START},
    S.HELLO: {M.INFO: S.READY, M.ERROR: S.START},
    S.READY: {**_READY_COMMANDS, M.UPDATE_REQUEST: S.UPDATE_REQUESTED, M.ERROR: S.READY},
    S.UPDATE_REQUESTED: {
        **_READY_COMMANDS,
        M.UPDATE_AVAILABLE: S.OFFERED,
        M.NO_UPDATE: S.READY,
        M.ERROR: S.READY,
    },
    S.OFFERED: {M.UPDATE_ACCEPT: S.READY, M.ABORT: S.READY, M.ERROR: S.READY},
    S.BEGIN: {M.BEGIN_OK: S.TRANSFER, M.ABORT: S.READY, M.ERROR: S.READY},
    S.TRANSFER: {
        M.ACK: S.TRANSFER,
        M.NACK: S.TRANSFER,
        M.SYNC: S.TRANSFER,
        M.BEGIN: S.BEGIN,
        M.FINISH: S.FINISH,
        M.ABORT: S.READY,
        M.ERROR: S.READY,
    },
    S.FINISH: {M.FINISH_OK: S.VERIFIED, M.ABORT: S.READY, M.ERROR: S.READY},
    S.VERIFIED: {M.COMMIT: S.COMMIT, M.ABORT: S.READY, M.ERROR: S.READY},
    S.COMMIT: {M.COMMIT_OK: S.COMMITTED, M.ABORT: S.READY, M.ERROR: S.READY},
    S.COMMITTED: {M.REBOOT: S.REBOOT, M.ABORT: S.READY, M.ERROR: S.READY},
    S.REBOOT: {M.REBOOT_OK: S.CLOSED, M.ERROR: S.READY},
    S.CLOSED: {},
}


def next_state(state: State, message_type: MessageType) -> State | None:
    """The state after ``message_type`` in ``state``, or None if the message is not allowed there."""
    return TRANSITIONS.get(state, {}).get(message_type)


def _label(role: Role, message_type: MessageType) -> str:
    verb = "send" if SENDER[message_type] is role else "recv"
    return f"{verb} {message_type.name}"


def render_table(role: Role) -> str:
    """The transition table seen from ``role``, as a Markdown table (embedded in SPEC.md)."""
    lines = ["| state | event | next state |", "|---|---|---|"]
    for state, row in TRANSITIONS.items():
        for message_type, target in row.items():
            lines.append(f"| {state.value} | {_label(role, message_type)} | {target.value} |")
    return "\n".join(lines)


def render_mermaid(role: Role) -> str:
    """The transition table seen from ``role``, as a Mermaid state diagram (embedded in SPEC.md).

    Messages that lead from one state to the same target share one edge; self-loops are drawn as such.
    """
    lines = ["stateDiagram-v2", f"    %% {role.value} view, generated from protocol/state.py", "    [*] --> START"]
    for state, row in TRANSITIONS.items():
        by_target: dict[State, list[str]] = {}
        for message_type, target in row.items():
            by_target.setdefault(target, []).append(_label(role, message_type))
        for target, labels in by_target.items():
            lines.append(f"    {state.value} --> {target.value}: {' / '.join(labels)}")
    lines.append("    CLOSED --> [*]")
    return "\n".join(lines)
