"""Power loss at every otadata erase and program of the boot switch: the board boots the old or the new image."""

from __future__ import annotations

from collections import Counter

from .boot_switch import SCENARIOS, boot_switch_trials
from .matrix import Outcome


def test_power_loss_anywhere_in_the_boot_switch_never_bricks() -> None:
    results = boot_switch_trials(full=False)
    bad = [r.explain() for r in results if not r.ok]
    assert not bad, "\n".join(bad)
    outcomes = Counter(r.outcome for r in results)
    assert outcomes[Outcome.BRICKED] == outcomes[Outcome.WRONG] == 0
    # Each scenario has the switch (erase + program), the first boot's PENDING_VERIFY write and the self-test's
    # VALID (or INVALID) write: 6 operations, 2 erase cuts + 4 program cuts each.
    per_scenario = Counter(r.name.split(":")[0] for r in results)
    assert per_scenario == {scenario: 18 for scenario in SCENARIOS}
    # Only an erase that never started, after the switch was written, leaves the new image in charge.
    new = sorted(r.name for r in results if r.outcome is Outcome.NEW)
    assert new == [f"{scenario}: operation 2, torn 0" for scenario in sorted(SCENARIOS)]


def test_a_torn_otadata_entry_falls_back_to_the_old_image() -> None:
    results = {r.name: r for r in boot_switch_trials(full=False)}
    torn = results["first update: operation 1, torn 16"]  # the new entry half programmed
    assert torn.outcome is Outcome.OLD and torn.board == "old"
    assert "power lost programming 0xd000 after 16 bytes" in torn.detail
    confirm = results["third update: operation 5, torn 31"]  # the VALID write torn one byte short
    assert confirm.outcome is Outcome.OLD  # the entry's CRC fails: the bootloader takes the older entry
