"""The transition table: shape, reachability, and the renderings in SPEC.md."""

from __future__ import annotations

from collections import deque

import pytest

from protocol import TRANSITIONS, MessageType, Role, State
from protocol.state import SENDER, next_state, render_mermaid, render_table


def reachable(start: State) -> set[State]:
    seen = {start}
    queue = deque([start])
    while queue:
        for target in TRANSITIONS[queue.popleft()].values():
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def test_every_state_but_error_is_in_the_table_and_reachable() -> None:
    assert set(TRANSITIONS) == set(State) - {State.ERROR}
    assert reachable(State.START) == set(State) - {State.ERROR}


def test_every_message_type_is_used_and_closed_is_terminal() -> None:
    used = {message_type for row in TRANSITIONS.values() for message_type in row}
    assert used == set(MessageType)
    assert TRANSITIONS[State.CLOSED] == {}


def test_sender_follows_bit_7() -> None:
    for message_type in MessageType:
        assert SENDER[message_type] is (Role.BOARD if message_type >= 0x80 else Role.BRIDGE)


def test_each_waiting_state_has_exactly_one_success_reply_from_the_board() -> None:
    waiting = {
        State.HELLO: MessageType.INFO,
        State.BEGIN: MessageType.BEGIN_OK,
        State.FINISH: MessageType.FINISH_OK,
        State.COMMIT: MessageType.COMMIT_OK,
        State.REBOOT: MessageType.REBOOT_OK,
        State.OFFERED: MessageType.UPDATE_ACCEPT,
    }
    for state, reply in waiting.items():
        board_moves = {t for t in TRANSITIONS[state] if SENDER[t] is Role.BOARD}
        assert board_moves == {reply, MessageType.ERROR}, state


def test_error_from_the_board_always_ends_the_operation() -> None:
    for state, row in TRANSITIONS.items():
        if state is State.CLOSED:
            continue
        assert row[MessageType.ERROR] is (State.START if state in (State.START, State.HELLO) else State.READY)


def test_abort_returns_to_ready_wherever_it_is_allowed() -> None:
    for row in TRANSITIONS.values():
        if MessageType.ABORT in row:
            assert row[MessageType.ABORT] is State.READY


def test_update_requested_accepts_every_ready_command() -> None:
    ready_commands = {t: s for t, s in TRANSITIONS[State.READY].items() if SENDER[t] is Role.BRIDGE}
    for message_type, target in ready_commands.items():
        assert next_state(State.UPDATE_REQUESTED, message_type) is target


@pytest.mark.parametrize("role", list(Role))
def test_renderings_cover_every_transition(role: Role) -> None:
    table = render_table(role)
    diagram = render_mermaid(role)
    total = sum(len(row) for row in TRANSITIONS.values())
    assert len(table.splitlines()) == total + 2
    assert diagram.startswith("stateDiagram-v2")
    for state, row in TRANSITIONS.items():
        for message_type in row:
            verb = "send" if SENDER[message_type] is role else "recv"
            assert f"{verb} {message_type.name}" in diagram
        assert state.value in diagram
    assert "send INFO" in render_mermaid(Role.BOARD) and "recv INFO" in render_mermaid(Role.BRIDGE)
