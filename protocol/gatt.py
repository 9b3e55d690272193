"""GATT layout of the OTA Bridge service (normative: ``SPEC.md`` section "GATT").

One primary service with two characteristics. The UUIDs share a base and differ in the first 32-bit group,
so firmware can declare them from one 128-bit template.

* control: write (with response) + notify. Commands from the bridge are written here; the board's replies,
  acks and requests arrive as notifications on it.
* data: write without response. Image data frames only.
"""

from __future__ import annotations

from typing import Final

SERVICE_UUID: Final = "e2e8fe54-c9cd-4787-a7fb-333765dab0c2"
CONTROL_UUID: Final = "e2e8fe55-c9cd-4787-a7fb-333765dab0c2"
DATA_UUID: Final = "e2e8fe56-c9cd-4787-a7fb-333765dab0c2"

#: Largest attribute value a GATT server must accept (Core spec Vol 3 Part F 3.2.9); Bumble drops larger writes.
MAX_ATTRIBUTE_BYTES: Final = 512
#: The ATT payload every link supports (default ATT_MTU 23 minus the 3-byte write header).
MIN_ATT_PAYLOAD: Final = 20
