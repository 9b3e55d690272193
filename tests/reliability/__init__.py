"""The fault matrix (issue 8): the bounded part runs here on every CI run; ``scripts/fault-matrix`` runs it all.

Library modules: :mod:`.matrix` (outcomes, records, the figures table), :mod:`.wire` (protocol harness),
:mod:`.boot_switch` (power loss in otadata), :mod:`.e2e` (Bridge over Bumble to the simulated board),
:mod:`.server` (a misbehaving HTTP server and the cache audit), :mod:`.inputs` (hostile CLI input).
"""
