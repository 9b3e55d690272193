"""Performance harness: protocol efficiency against the BLE link and against today's protocols.

Run ``python -m benchmarks.run`` (``make bench``); it prints the table, writes ``benchmarks/README.md`` and, with
``--json``, prints the same figures as JSON. Modules:

* ``clock``: integer-microsecond virtual clock;
* ``link``: the BLE link model (connection events, LL fragmentation, ATT, ARQ, central/board hosts);
* ``board``: the board's RAM buffer and flash with three erase strategies;
* ``capacity``: link capacity (infinite backlog, no acks, no flash);
* ``session``: one simulated upload and its result; ``ours``: our protocol's real sans-I/O objects on the link;
  ``anchors``: Espressif ``ble_ota`` (stop-and-wait and 3 sectors in flight), SMP, Nordic DFU;
* ``profiles``: the reference profiles and their sources; ``harness``: sweeps, tables, targets;
* ``wallclock``: CPU and peak RSS of the product path on the Bumble link; ``report``/``run``: output.

Not part of the installed package: run it from a checkout.
"""
