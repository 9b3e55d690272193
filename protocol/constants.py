"""Wire numbers, limits and timeouts of the OTA Bridge protocol (normative: ``SPEC.md``).

Every number that goes on the wire is an ``IntEnum``/``IntFlag`` with explicit values, so a C port can mirror
them one to one. Numbers that never travel (``Recovery``) are plain ``Enum``.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "ACK_TIMEOUT_S",
    "COMMIT_TIMEOUT_S",
    "CONTROL_HEADER_BYTES",
    "CONTROL_TRAILER_BYTES",
    "DATA_FRAME_OVERHEAD_BYTES",
    "DATA_HEADER_BYTES",
    "DATA_TRAILER_BYTES",
    "ERROR_RECOVERY",
    "HELLO_TIMEOUT_S",
    "MAX_BOARD_ID_BYTES",
    "MAX_CONTROL_BODY_BYTES",
    "MAX_DATAGRAM_BYTES",
    "MAX_ERROR_TEXT_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_LABEL_BYTES",
    "MAX_PROJECT_BYTES",
    "MAX_SIGNATURE_BYTES",
    "MAX_SYNC_ATTEMPTS",
    "MAX_VERSION_BYTES",
    "MIN_DATAGRAM_BYTES",
    "OFFER_TIMEOUT_S",
    "PROTOCOL_VERSION",
    "REBOOT_TIMEOUT_S",
    "RECEIVE_IDLE_TIMEOUT_S",
    "UPDATE_REQUEST_TIMEOUT_S",
    "BeginFlags",
    "EraseStrategy",
    "ErrorCode",
    "Feature",
    "MessageType",
    "NackReason",
    "NoUpdateReason",
    "Recovery",
    "RollbackState",
    "UpdateResult",
    "begin_timeout_s",
    "finish_timeout_s",
]

#: The protocol version this implementation speaks (HELLO carries a range, INFO the chosen one).
PROTOCOL_VERSION: Final = 1

# --- Limits -------------------------------------------------------------------------------------------------
#: Largest GATT write/notification value: attribute values are capped at 512 bytes (Core spec Vol 3 Part F
#: 3.2.9); bumble's server silently drops longer writes, so MTU 517 still means 512-byte datagrams.
MAX_DATAGRAM_BYTES: Final = 512
#: Every link supports ATT_MTU 23, i.e. 20-byte writes and notifications.
MIN_DATAGRAM_BYTES: Final = 20
#: Control message header: type u8 + body length u16.
CONTROL_HEADER_BYTES: Final = 3
#: Control message trailer: CRC-16 u16.
CONTROL_TRAILER_BYTES: Final = 2
#: Bodies above this are refused before buffering (bounds receiver memory; BEGIN with a 512-byte signature fits).
MAX_CONTROL_BODY_BYTES: Final = 1024
#: Data frame header: absolute image offset u32.
DATA_HEADER_BYTES: Final = 4
#: Data frame trailer: CRC-16 u16 over header and payload.
DATA_TRAILER_BYTES: Final = 2
DATA_FRAME_OVERHEAD_BYTES: Final = DATA_HEADER_BYTES + DATA_TRAILER_BYTES
#: Offsets and sizes are u32.
MAX_IMAGE_BYTES: Final = 0xFFFF_FFFF
#: ``esp_app_desc_t.version`` and ``project_name`` are char[32] including the NUL: 31 bytes of text; we allow 32.
MAX_VERSION_BYTES: Final = 32
MAX_PROJECT_BYTES: Final = 32
#: Partition labels are char[16] in the ESP-IDF partition table.
MAX_LABEL_BYTES: Final = 16
MAX_BOARD_ID_BYTES: Final = 16
MAX_ERROR_TEXT_BYTES: Final = 64
#: Room for an ECDSA/RSA signature or a small signed envelope.
MAX_SIGNATURE_BYTES: Final = 512

# --- Timeouts (bridge side unless noted) ---------------------------------------------------------------------
HELLO_TIMEOUT_S: Final = 5.0
#: Data: the longest the bridge waits for an ACK/NACK while it cannot send (window full or all sent). A 64 KB
#: block erase may take 4.1 s worst case (ESP-IDF driver timeout), hence the margin.
ACK_TIMEOUT_S: Final = 10.0
#: Timeouts in a row without the ACK offset advancing before the bridge gives up with ErrorCode.TIMEOUT.
MAX_SYNC_ATTEMPTS: Final = 3
COMMIT_TIMEOUT_S: Final = 5.0
REBOOT_TIMEOUT_S: Final = 5.0
#: The board may ask its user before accepting an offered update.
OFFER_TIMEOUT_S: Final = 30.0
#: Board side: how long a board waits for the bridge to answer UPDATE_REQUEST (the bridge asks the server).
UPDATE_REQUEST_TIMEOUT_S: Final = 60.0
#: Board side: RECEIVING with no data and no command for this long ends the transfer (resume state is kept).
RECEIVE_IDLE_TIMEOUT_S: Final = 60.0

_MIB: Final = 1 << 20


def begin_timeout_s(image_size: int) -> float:
    """How long the bridge waits for BEGIN_OK: erase up front runs at ~3-5 s per MiB on ESP32 flash.

    30 s up to 4 MiB, then 7.5 s per MiB.
    """
    return max(30.0, 7.5 * image_size / _MIB)


def finish_timeout_s(image_size: int) -> float:
    """How long the bridge waits for FINISH_OK: the board hashes and validates the image read back from flash.

    10 s up to 4 MiB, then 2.5 s per MiB.
    """
    return max(10.0, 2.5 * image_size / _MIB)


# --- Wire enums ----------------------------------------------------------------------------------------------


@enum.unique
class MessageType(enum.IntEnum):
    """First byte of every control message. Bit 7 set = sent by the board (notification)."""

    HELLO = 0x01
    BEGIN = 0x02
    SYNC = 0x03
    FINISH = 0x04
    COMMIT = 0x05
    REBOOT = 0x06
    ABORT = 0x07
    UPDATE_AVAILABLE = 0x08
    NO_UPDATE = 0x09

    INFO = 0x81
    BEGIN_OK = 0x82
    ACK = 0x83
    NACK = 0x84
    FINISH_OK = 0x85
    COMMIT_OK = 0x86
    REBOOT_OK = 0x87
    UPDATE_REQUEST = 0x88
    UPDATE_ACCEPT = 0x89
    ERROR = 0xFF


@enum.unique
class ErrorCode(enum.IntEnum):
    """Error codes carried by ERROR (board) and ABORT (bridge), and by ``ProtocolError.code``.

    ``ERROR_RECOVERY`` says what the other side must do on each; SPEC.md has the full table.
    """

    OK = 0x00
    # Protocol (either side broke the rules).
    BAD_MESSAGE = 0x01
    BAD_STATE = 0x02
    UNSUPPORTED_VERSION = 0x03
    UNKNOWN_MESSAGE = 0x04
    BAD_FRAME = 0x05
    TIMEOUT = 0x06
    # Refusals of BEGIN or of an offered update: nothing was written.
    BUSY = 0x10
    LOW_BATTERY = 0x11
    TOO_LARGE = 0x12
    CHIP_MISMATCH = 0x13
    PROJECT_MISMATCH = 0x14
    SECURE_VERSION_TOO_LOW = 0x15
    SIGNATURE_REQUIRED = 0x16
    BAD_SIGNATURE = 0x17
    ROLLBACK_PENDING = 0x18
    DECLINED = 0x19
    ALREADY_INSTALLED = 0x1A
    FEATURE_UNSUPPORTED = 0x1B
    # Transfer, verification, commit.
    FLASH_ERROR = 0x20
    HASH_MISMATCH = 0x21
    INVALID_IMAGE = 0x22
    INCOMPLETE = 0x23
    BOOT_PARTITION_FAILED = 0x24
    # Bridge-side reasons (ABORT).
    CANCELLED = 0x30
    BRIDGE_ERROR = 0x31
    # Anything else on the board.
    INTERNAL = 0x7F


class Recovery(enum.Enum):
    """What the receiver of an error must do (not on the wire)."""

    #: Fix the peer's software; retrying the same thing fails the same way. Disconnect.
    FIX_PEER = "fix-peer"
    #: Disconnect, reconnect, HELLO, BEGIN with the same image: the board continues from its offset.
    RECONNECT_AND_RESUME = "reconnect-and-resume"
    #: Wait ``retry_after_s`` (or a back-off when 0), then try again.
    RETRY_LATER = "retry-later"
    #: Start the transfer again from offset 0 (BEGIN with flag RESTART).
    RESTART = "restart"
    #: This image can never go to this board: give up and tell the user why.
    GIVE_UP = "give-up"
    #: Not an error / nothing to do.
    NONE = "none"


#: Normative mapping: the receiver of each code (bridge for ERROR, board for ABORT) acts like this.
ERROR_RECOVERY: Final[dict[ErrorCode, tuple[Recovery, str]]] = {
    ErrorCode.OK: (Recovery.NONE, "No error (ABORT without a reason)."),
    ErrorCode.BAD_MESSAGE: (
        Recovery.RECONNECT_AND_RESUME,
        "A control message failed its CRC, length or field checks. The control stream cannot be trusted: "
        "disconnect; a new connection resumes.",
    ),
    ErrorCode.BAD_STATE: (
        Recovery.RECONNECT_AND_RESUME,
        "The command is not allowed in the receiver's state. Both sides are back in READY: "
        "start again with HELLO or BEGIN (resume).",
    ),
    ErrorCode.UNSUPPORTED_VERSION: (
        Recovery.GIVE_UP,
        "No common protocol version in HELLO's range. Update the bridge or the board firmware.",
    ),
    ErrorCode.UNKNOWN_MESSAGE: (
        Recovery.FIX_PEER,
        "Message type unknown to the receiver, or sent in the wrong direction.",
    ),
    ErrorCode.BAD_FRAME: (
        Recovery.RESTART,
        "A data frame with a valid CRC lies outside the image. The sender is buggy: restart the transfer.",
    ),
    ErrorCode.TIMEOUT: (
        Recovery.RECONNECT_AND_RESUME,
        "The peer did not answer within the SPEC timeout. Disconnect, reconnect and resume.",
    ),
    ErrorCode.BUSY: (
        Recovery.RETRY_LATER,
        "The board is doing something it will not interrupt. Retry after retry_after_s.",
    ),
    ErrorCode.LOW_BATTERY: (
        Recovery.RETRY_LATER,
        "Battery too low to write flash safely. Retry after retry_after_s or once charged.",
    ),
    ErrorCode.TOO_LARGE: (Recovery.GIVE_UP, "The image does not fit the board's next OTA partition."),
    ErrorCode.CHIP_MISMATCH: (Recovery.GIVE_UP, "The image was built for another chip."),
    ErrorCode.PROJECT_MISMATCH: (Recovery.GIVE_UP, "The image belongs to another project."),
    ErrorCode.SECURE_VERSION_TOO_LOW: (
        Recovery.GIVE_UP,
        "The image's secure_version is below the board's anti-rollback counter: it would never boot.",
    ),
    ErrorCode.SIGNATURE_REQUIRED: (Recovery.GIVE_UP, "The board requires a signature and BEGIN carried none."),
    ErrorCode.BAD_SIGNATURE: (Recovery.GIVE_UP, "The signature in BEGIN does not verify on the board."),
    ErrorCode.ROLLBACK_PENDING: (
        Recovery.RETRY_LATER,
        "The running app is still PENDING_VERIFY (esp_ota_begin refuses). Retry once it marked itself valid.",
    ),
    ErrorCode.DECLINED: (
        Recovery.RETRY_LATER,
        "The board (or its user) declined this update now. Do not insist; retry after retry_after_s if set.",
    ),
    ErrorCode.ALREADY_INSTALLED: (Recovery.NONE, "The board already runs this exact image."),
    ErrorCode.FEATURE_UNSUPPORTED: (
        Recovery.FIX_PEER,
        "The command needs a feature bit the board did not announce in INFO.",
    ),
    ErrorCode.FLASH_ERROR: (
        Recovery.RESTART,
        "Erase or write failed on the board. Restart the transfer (BEGIN with RESTART); give up after a few tries.",
    ),
    ErrorCode.HASH_MISMATCH: (
        Recovery.RESTART,
        "FINISH: the SHA-256 of what the board wrote differs from BEGIN's. The board discarded its resume state: "
        "restart from 0.",
    ),
    ErrorCode.INVALID_IMAGE: (
        Recovery.GIVE_UP,
        "FINISH: the bytes match BEGIN's SHA-256 but the board's image validation (esp_ota_end) failed.",
    ),
    ErrorCode.INCOMPLETE: (
        Recovery.RECONNECT_AND_RESUME,
        "FINISH arrived before the board had written every byte. Resume with BEGIN.",
    ),
    ErrorCode.BOOT_PARTITION_FAILED: (
        Recovery.RETRY_LATER,
        "COMMIT: setting the boot partition failed; the old image still boots. Retry COMMIT once, then give up.",
    ),
    ErrorCode.CANCELLED: (Recovery.NONE, "ABORT: the user cancelled. The board discards the transfer."),
    ErrorCode.BRIDGE_ERROR: (
        Recovery.NONE,
        "ABORT: the bridge failed on its side (download, disk). The board discards the transfer.",
    ),
    ErrorCode.INTERNAL: (Recovery.RECONNECT_AND_RESUME, "Unexpected failure on the board. Reconnect and resume."),
}


class Feature(enum.IntFlag):
    """Feature bits (u32) in HELLO (what the bridge understands) and INFO (what the board does).

    The effective set is the AND of both.
    """

    NONE = 0
    #: The board keeps a partial transfer across disconnects and honours BEGIN with the same SHA-256.
    RESUME = 1 << 0
    #: The board may send UPDATE_REQUEST; the bridge can answer it.
    UPDATE_REQUEST = 1 << 1
    #: The board verifies the signature carried in BEGIN.
    SIGNATURE = 1 << 2
    #: The board runs with app rollback (a new image boots PENDING_VERIFY and must mark itself valid).
    APP_ROLLBACK = 1 << 3
    #: The board enforces secure_version (anti-rollback eFuse).
    ANTI_ROLLBACK = 1 << 4


class BeginFlags(enum.IntFlag):
    """BEGIN flags (u8)."""

    NONE = 0
    #: Discard any partial transfer of this image and start at offset 0.
    RESTART = 1 << 0


@enum.unique
class NackReason(enum.IntEnum):
    """Why the board asks for retransmission (NACK reason, u8)."""

    #: Answer to SYNC: not an error, just the board's expected offset.
    REQUESTED = 0
    #: A frame arrived beyond the expected offset (a frame before it was lost).
    GAP = 1
    #: A frame failed its CRC-16.
    BAD_CRC = 2
    #: A frame was shorter than header + 1 + CRC, or longer than max_frame_bytes.
    BAD_LENGTH = 3
    #: The sender exceeded the granted window.
    WINDOW_OVERRUN = 4


@enum.unique
class NoUpdateReason(enum.IntEnum):
    """Why the bridge answers UPDATE_REQUEST with NO_UPDATE (u8)."""

    UP_TO_DATE = 0
    SERVER_UNREACHABLE = 1
    NOT_ELIGIBLE = 2


@enum.unique
class EraseStrategy(enum.IntEnum):
    """How the board erases its OTA partition (INFO). It decides where the long waits are."""

    #: ESP-IDF OTA_WITH_SEQUENTIAL_WRITES: erase each 4 KB sector as the write cursor reaches it. BEGIN is fast;
    #: the data rate is capped at roughly 43-81 KB/s by sector erase time.
    SEQUENTIAL_4K = 0
    #: esp_ota_begin(image_size): erase the whole image size before answering BEGIN (up to begin_timeout_s).
    UP_FRONT = 1
    #: Erase 64 KB blocks ahead of the cursor from a background task: fast BEGIN, near link-rate data.
    BLOCK_AHEAD_64K = 2


@enum.unique
class RollbackState(enum.IntEnum):
    """State of the running app (ESP-IDF esp_ota_img_states_t, narrowed to u8)."""

    NEW = 0
    PENDING_VERIFY = 1
    VALID = 2
    INVALID = 3
    ABORTED = 4
    #: ESP_OTA_IMG_UNDEFINED (0xFFFFFFFF): rollback disabled, or factory app.
    UNDEFINED = 0xFF


@enum.unique
class UpdateResult(enum.IntEnum):
    """Outcome of the board's last update attempt (INFO)."""

    NONE = 0
    SUCCESS = 1
    ROLLED_BACK = 2
    FAILED = 3
    ABORTED = 4
    INTERRUPTED = 5
