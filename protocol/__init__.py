"""The bridge <-> board wire protocol, sans I/O: bytes in, events out. Normative text: ``protocol/SPEC.md``.

No asyncio, no bleak, no clock: the caller owns the GATT link and the timers. One object per role:

Bridge (GATT client)::

    conn = BridgeConnection(max_write_bytes=char.max_write_without_response_size)
    for w in conn.send(Hello(features=DEFAULT_BRIDGE_FEATURES)):
        await client.write_gatt_char(CONTROL_UUID, w, response=True)
    # on every notification of CONTROL_UUID:
    conn.receive_control(data)
    while (event := conn.next_event()) is not None:
        ...  # Info, BeginOk, Ack, Nack, FinishOk, CommitOk, RebootOk, UpdateRequest, UpdateAccept, Error
    # after BEGIN_OK, pump data (write without response) while the window allows:
    while (frame := conn.next_data_frame(image)) is not None:
        await client.write_gatt_char(DATA_UUID, frame, response=False)
    if conn.transfer_complete:
        conn.send(Finish())
    # wait at most conn.timeout_s for the next notification; on expiry: writes = conn.handle_timeout()

Board (GATT server)::

    conn = BoardConnection(max_notify_bytes=att_mtu - 3, features=Feature.RESUME)
    conn.receive_control(value)      # control characteristic write
    conn.receive_data(value)         # data characteristic write
    notify(conn.data_to_send())      # automatic NACK / ERROR / SYNC answers
    while (event := conn.next_event()) is not None:
        ...  # Hello, Begin, DataReceived, Finish, Commit, Reboot, Abort, UpdateAvailable, NoUpdate
    notify(conn.send(BeginOk(offset=0, window_bytes=16384)))   # replies may be deferred (erase takes time)
    notify(conn.data_written(event.end))                          # after flash write: produces ACKs

Errors: ``LocalProtocolError`` (you misused the API) and ``RemoteProtocolError`` (the peer broke the protocol),
both with ``.code`` (an ``ErrorCode``), raised by ``send``/``next_event``/``handle_timeout``.
``ERROR_RECOVERY[code]`` says what to do about each code (retry later, reconnect and resume, give up...).

``protocol.reference`` has an in-memory board application (``ReferenceBoard``), a seeded faulty link and
``run_update``, which plays the bridge's part end to end: for tests and benchmarks, and as a worked example.
"""

from __future__ import annotations

from protocol.connection import DEFAULT_BRIDGE_FEATURES, BoardConnection, BridgeConnection, ImageSource
from protocol.constants import (
    ACK_TIMEOUT_S,
    COMMIT_TIMEOUT_S,
    DATA_FRAME_OVERHEAD_BYTES,
    ERROR_RECOVERY,
    HELLO_TIMEOUT_S,
    MAX_CONTROL_BODY_BYTES,
    MAX_DATAGRAM_BYTES,
    MAX_SYNC_ATTEMPTS,
    MIN_DATAGRAM_BYTES,
    OFFER_TIMEOUT_S,
    PROTOCOL_VERSION,
    REBOOT_TIMEOUT_S,
    RECEIVE_IDLE_TIMEOUT_S,
    UPDATE_REQUEST_TIMEOUT_S,
    BeginFlags,
    EraseStrategy,
    ErrorCode,
    Feature,
    MessageType,
    NackReason,
    NoUpdateReason,
    Recovery,
    RollbackState,
    UpdateResult,
    begin_timeout_s,
    finish_timeout_s,
)
from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.events import BoardEvent, BridgeEvent, DataRange, DataReceived
from protocol.framing import (
    ControlDecoder,
    DataFrame,
    DataFrameError,
    crc16,
    decode_data_frame,
    encode_control,
    encode_data_frame,
    split_datagrams,
)
from protocol.gatt import CONTROL_UUID, DATA_UUID, SERVICE_UUID
from protocol.messages import (
    Abort,
    Ack,
    Begin,
    BeginOk,
    BoardMessage,
    BridgeMessage,
    Commit,
    CommitOk,
    Error,
    Finish,
    FinishOk,
    Hello,
    Info,
    Message,
    Nack,
    NoUpdate,
    Reboot,
    RebootOk,
    Sync,
    UpdateAccept,
    UpdateAvailable,
    UpdateRequest,
    decode_message,
    encode_message,
)
from protocol.state import TRANSITIONS, Role, State

__all__ = [
    "ACK_TIMEOUT_S",
    "COMMIT_TIMEOUT_S",
    "CONTROL_UUID",
    "DATA_FRAME_OVERHEAD_BYTES",
    "DATA_UUID",
    "DEFAULT_BRIDGE_FEATURES",
    "ERROR_RECOVERY",
    "HELLO_TIMEOUT_S",
    "MAX_CONTROL_BODY_BYTES",
    "MAX_DATAGRAM_BYTES",
    "MAX_SYNC_ATTEMPTS",
    "MIN_DATAGRAM_BYTES",
    "OFFER_TIMEOUT_S",
    "PROTOCOL_VERSION",
    "REBOOT_TIMEOUT_S",
    "RECEIVE_IDLE_TIMEOUT_S",
    "SERVICE_UUID",
    "TRANSITIONS",
    "UPDATE_REQUEST_TIMEOUT_S",
    "Abort",
    "Ack",
    "Begin",
    "BeginFlags",
    "BeginOk",
    "BoardConnection",
    "BoardEvent",
    "BoardMessage",
    "BridgeConnection",
    "BridgeEvent",
    "BridgeMessage",
    "Commit",
    "CommitOk",
    "ControlDecoder",
    "DataFrame",
    "DataFrameError",
    "DataRange",
    "DataReceived",
    "EraseStrategy",
    "Error",
    "ErrorCode",
    "Feature",
    "Finish",
    "FinishOk",
    "Hello",
    "ImageSource",
    "Info",
    "LocalProtocolError",
    "Message",
    "MessageType",
    "Nack",
    "NackReason",
    "NoUpdate",
    "NoUpdateReason",
    "ProtocolError",
    "Reboot",
    "RebootOk",
    "Recovery",
    "RemoteProtocolError",
    "Role",
    "RollbackState",
    "State",
    "Sync",
    "UpdateAccept",
    "UpdateAvailable",
    "UpdateRequest",
    "UpdateResult",
    "begin_timeout_s",
    "crc16",
    "decode_data_frame",
    "decode_message",
    "encode_control",
    "encode_data_frame",
    "encode_message",
    "finish_timeout_s",
    "split_datagrams",
]
