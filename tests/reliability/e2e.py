"""Faults end to end: the product's :class:`bridge.Bridge` pushes an image over Bumble to a simulated ESP32.

One trial = one fresh :class:`bridge.sim.VirtualWorld` with one :class:`bridge.sim.board.SimulatedBoard` running
the *old* image, one ``Bridge.push`` of the *new* image with a fault injected, then a look at what the board boots.
Faults come from the simulator's knobs (:class:`bridge.sim.config.SimFaults`: disconnect at an offset, lost /
duplicated / corrupted frames, power loss at an offset, slow flash, a small receive buffer, lying ACKs) and from
:class:`Hook` objects that act at a moment of the update: when the board handles BEGIN, FINISH or COMMIT, when the
bridge reports progress, after the reboot.

Hooks that act inside the board wrap the simulated firmware's ``_on_begin`` / ``_on_finish`` / ``_on_commit`` and
the board's ``_notify``: the simulator has no public seam for "the moment COMMIT arrives". They are the only use of
its private names and live here, in :meth:`Context.patch`.

After a clean abort the trial runs the same push again with the fault gone (what the hint tells a person to do),
and records whether that ends with the new image.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import Bridge, BridgeConfig, BridgeError
from bridge.events import Confirmed, Rebooting, Reconnecting, RolledBack, SyncEvent, Uploading, UpToDate
from bridge.image import Chip, build_image, validate_image
from bridge.sim.board import SimulatedBoard
from bridge.sim.config import SelfTest, SimBoardConfig, SimFaults
from bridge.sim.esp_ota import OtaImgState
from bridge.sim.world import VirtualWorld
from bridge.source import trust_server
from protocol import FinishOk, MessageType, encode_message
from protocol.constants import EraseStrategy

from .matrix import GOOD, Outcome, Stopwatch, TrialResult, capture_errors, check_message
from .server import Fault, FaultyServer, audit_cache, publish

__all__ = [
    "Images",
    "SimTrial",
    "built_images",
    "corpus_images",
    "run_sim_trial",
    "sim_trials",
    "trial_config",
]

logger = logging.getLogger(__name__)

#: Exit codes `bridge push` documents for a failed update (bridge/cli/update_cmds.py, push_cmd).
PUSH_EXIT_CODES = frozenset({4, 5, 6, 7, 8})
#: `bridge sync` adds 9 (the update server failed).
SYNC_EXIT_CODES = PUSH_EXIT_CODES | {9}
_BLOCK = 64 * 1024
#: What `bridge push` exits with when the push itself ended without an error.
_EXIT_BY_OUTCOME = {Outcome.NEW: 0, Outcome.OLD: 8}


@dataclass(frozen=True)
class Images:
    """The image the board runs first (``old``) and the one pushed (``new``, a file)."""

    label: str
    chip: Chip
    project: str
    old: bytes
    new_path: Path
    new: bytes
    other_path: Path
    """A third image of the same project (what a second bridge pushes)."""

    @property
    def size(self) -> int:
        return len(self.new)

    @property
    def old_sha(self) -> str:
        return hashlib.sha256(self.old).hexdigest()

    @property
    def new_sha(self) -> str:
        return hashlib.sha256(self.new).hexdigest()

    @property
    def other_sha(self) -> str:
        return hashlib.sha256(self.other_path.read_bytes()).hexdigest()


def corpus_images(p11: Path, workdir: Path) -> Images:
    """P11 (MicroPython for an ESP32-S3, 1,593,472 bytes, empty project and version) over a built old image."""
    info = validate_image(p11)
    assert info.chip_id == Chip.ESP32S3 and info.size == 1_593_472, info
    workdir.mkdir(parents=True, exist_ok=True)
    other = workdir / "other.bin"
    other.write_bytes(build_image(chip=Chip.ESP32S3, project="", version="0.9.5", size=256 * 1024, seed=3))
    old = build_image(chip=Chip.ESP32S3, project="", version="0.9.0", size=320 * 1024, seed=2)
    return Images("P11 (1,593,472 B)", Chip.ESP32S3, "", old, p11, p11.read_bytes(), other)


def built_images(workdir: Path, size: int = 512 * 1024) -> Images:
    """Two built ESP32-S3 images of project ``rel``: 1.0.0 on the board, 2.0.0 (``size`` bytes) pushed."""
    workdir.mkdir(parents=True, exist_ok=True)
    new_path, other = workdir / f"rel-2.0.0-{size}.bin", workdir / "rel-2.1.0.bin"
    new = build_image(chip=Chip.ESP32S3, project="rel", version="2.0.0", size=size, seed=1)
    new_path.write_bytes(new)
    other.write_bytes(build_image(chip=Chip.ESP32S3, project="rel", version="2.1.0", size=128 * 1024, seed=3))
    old = build_image(chip=Chip.ESP32S3, project="rel", version="1.0.0", size=192 * 1024, seed=2)
    return Images(f"built ({size:,} B)", Chip.ESP32S3, "rel", old, new_path, new, other)


def trial_config(data_dir: Path, **changes: Any) -> BridgeConfig:
    """Timeouts sized for a virtual radio: a fault ends in seconds, not minutes, but the engine still retries."""
    base = BridgeConfig(
        data_dir=data_dir,
        scan_timeout_s=1.5,
        connect_timeout_s=3.0,
        reply_timeout_s=3.0,
        ack_timeout_s=3.0,
        reboot_timeout_s=15.0,
        reconnect_attempts=5,
        reconnect_backoff_s=0.05,
        reconnect_backoff_max_s=0.5,
    )
    return base.replace(**changes) if changes else base


# --- Hooks ------------------------------------------------------------------------------------------------------


async def until(condition: Callable[[], bool], *, timeout_s: float = 20.0, poll_s: float = 0.002) -> None:
    """Wait until ``condition()`` holds; raises TimeoutError after ``timeout_s``.

    Polling, because the moments waited for (the board booted, a state in otadata) raise no event.
    """
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - no event to wait on (see the docstring)
            await asyncio.sleep(poll_s)


@dataclass
class Context:
    world: VirtualWorld
    board: SimulatedBoard
    images: Images
    bridge: Bridge
    sync: bool = False
    """Drive ``Bridge.sync`` (from the update server) instead of ``Bridge.push`` (a local file)."""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    restore: list[Callable[[], None]] = field(default_factory=list)

    def spawn(self, coro: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # a hook that fails is a failing trial, not a silent one
                self.failures.append(exc)

        task = asyncio.ensure_future(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def patch(self, name: str, replacement: Any) -> Any:
        """Replace the board's (or its OTA app's) method ``name`` for this trial; returns the original."""
        app = getattr(self.board, "app", None)
        owner: Any = app if app is not None and hasattr(app, name) else self.board
        original = getattr(owner, name)
        setattr(owner, name, replacement)
        self.restore.append(lambda: delattr(owner, name))
        return original

    async def drop_link(self) -> bool:
        """The radio link drops (supervision timeout), seen from the board. False if nothing was connected."""
        device = self.board.device
        assert device is not None
        connections = list(device.connections.values())
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.disconnect(0x08)  # HCI_CONNECTION_TIMEOUT_ERROR
        return bool(connections)


class Hook:
    """Something done to the board or the link during one trial (default: nothing)."""

    def install(self, ctx: Context) -> None:
        """Called before the push starts."""

    async def on_event(self, ctx: Context, event: SyncEvent) -> None:
        """Called with every progress event of the push, before the engine continues."""


@dataclass
class DropLinkInBoardPhase(Hook):
    """Drop the link while the board handles ``phase`` (begin: erasing; finish: verifying; commit: switching)."""

    phase: str

    def install(self, ctx: Context) -> None:
        name = {"begin": "_on_begin", "finish": "_on_finish", "commit": "_on_commit"}[self.phase]
        fired = False

        def wrapper(*args: Any) -> Any:
            nonlocal fired
            if not fired:
                fired = True
                ctx.spawn(ctx.drop_link())
                ctx.notes.append(f"link dropped as the board handled {self.phase.upper()}")
            return original(*args)

        original = ctx.patch(name, wrapper)


@dataclass
class DropLinkAfterReboot(Hook):
    """Drop the link as soon as the bridge has reconnected after the reboot, before it confirmed the version."""

    async def on_event(self, ctx: Context, event: SyncEvent) -> None:
        if isinstance(event, Rebooting):
            ctx.spawn(self._drop_when_connected(ctx))

    async def _drop_when_connected(self, ctx: Context) -> None:
        board = ctx.board
        await until(lambda: board.booted.is_set() and board.is_connected and board.running_sha256 == ctx.images.new_sha)
        if await ctx.drop_link():
            ctx.notes.append("link dropped on the first reconnection after the reboot")


@dataclass
class PowerCutAtCommit(Hook):
    """Cut the power as COMMIT arrives: ``before`` the otadata write, or right ``after`` it (before COMMIT_OK)."""

    when: str

    def install(self, ctx: Context) -> None:
        fired = False

        def wrapper(*args: Any) -> Any:
            nonlocal fired
            if fired:
                return original(*args)
            fired = True
            result = None if self.when == "before" else original(*args)
            ctx.notes.append(f"power cut {self.when} the boot-partition switch")
            ctx.spawn(ctx.board.power_cut())
            return result

        original = ctx.patch("_on_commit", wrapper)


@dataclass
class PowerCutWhilePendingVerify(Hook):
    """Cut the power while the new image runs its first self-test (PENDING_VERIFY): the bootloader rolls back."""

    async def on_event(self, ctx: Context, event: SyncEvent) -> None:
        if isinstance(event, Rebooting):
            ctx.spawn(self._cut(ctx))

    async def _cut(self, ctx: Context) -> None:
        board = ctx.board
        await until(
            lambda: board.rollback_state is OtaImgState.PENDING_VERIFY and board.running_sha256 == ctx.images.new_sha
        )
        ctx.notes.append("power cut during the new image's self-test (pending verify)")
        await board.power_cut()


@dataclass
class AtProgress(Hook):
    """Run ``action`` once, when the board has acknowledged ``fraction`` of the image."""

    fraction: float
    action: str
    """``reboot``: the board resets; ``stall``: its flash becomes very slow for ``stall_s``;
    ``second-status`` / ``second-push``: a second bridge asks the same board for its status / pushes another image."""
    stall_s: float = 3.0
    fired: bool = False

    async def on_event(self, ctx: Context, event: SyncEvent) -> None:
        if self.fired or not isinstance(event, Uploading) or event.acked_bytes < self.fraction * event.total_bytes:
            return
        self.fired = True
        if self.action == "reboot":
            ctx.notes.append(f"board reset at {event.acked_bytes:,} bytes")
            ctx.spawn(ctx.board.reboot())
        elif self.action == "stall":
            ctx.spawn(self._stall(ctx, event.acked_bytes))
        else:  # awaited: the first bridge holds the link, paused, while the second one tries
            await self._second_bridge(ctx)

    async def _stall(self, ctx: Context, at: int) -> None:
        board = ctx.board
        before = board.faults
        board.set_faults(dataclasses.replace(before, flash_slowdown=60.0))
        ctx.notes.append(f"flash 60x slower for {self.stall_s:g} s from {at:,} bytes")
        await asyncio.sleep(self.stall_s)
        board.set_faults(before)

    async def _second_bridge(self, ctx: Context) -> None:
        async with second_bridge(ctx, connect_timeout_s=0.5) as second:
            if self.action == "second-status":
                status = await second.status(ctx.board.address)
                ctx.notes.append(f"second bridge: connected={status.connected} {status.error or status.summary()}")
                if status.connected:
                    raise AssertionError("a second bridge reached a board that is connected to the first")
            else:
                try:
                    async for _ in second.push(ctx.board.address, ctx.images.other_path):
                        pass
                except BridgeError as exc:
                    ctx.notes.append(f"second bridge stopped: exit {int(exc.exit_code)} {exc.message}")
                else:
                    raise AssertionError("a second bridge pushed to a board that is connected to the first")


@contextlib.asynccontextmanager
async def second_bridge(ctx: Context, **config: Any) -> AsyncIterator[Bridge]:
    """Another technician's bridge: its own central on the same virtual radio, its own data folder."""
    from bumble import hci

    from bridge.ble.bumble_backend import BumbleBackend

    device = await ctx.world.new_device("bridge-2", hci.Address("F0:0D:00:00:00:02"))
    settings = ctx.bridge.config.replace(data_dir=ctx.bridge.config.data_dir / "second", connect_retries=0, **config)
    async with Bridge(settings, backend=BumbleBackend(device, name="second", virtual=True)) as second:
        yield second


@dataclass
class SecondBridgeInTheGap(Hook):
    """While the first bridge waits to reconnect after a dropped link, a second one uses the board.

    ``push``: it installs another image completely (the board reboots into it); the first bridge then comes back,
    finds its transfer gone and must still end truthfully. ``status``: it only reads the board's INFO.
    """

    action: str
    fired: bool = False

    async def on_event(self, ctx: Context, event: SyncEvent) -> None:
        if self.fired or not isinstance(event, Reconnecting) or event.resume_offset is None:
            return
        self.fired = True
        # Awaited here, so the first bridge stays paused right after it noticed the drop: a fixed interleaving.
        async with second_bridge(ctx) as second:
            if self.action == "status":
                status = await second.status(ctx.board.address)
                ctx.notes.append(f"second bridge read the board: {status.summary()}")
                return
            last: SyncEvent | None = None
            try:
                async for event in second.push(ctx.board.address, ctx.images.other_path):
                    last = event
            except BridgeError as exc:
                ctx.notes.append(f"second bridge stopped: exit {int(exc.exit_code)} {exc.message}")
                return
            ctx.notes.append(f"second bridge installed its image: {last}")
            if not isinstance(last, Confirmed) or ctx.board.running_sha256 != ctx.images.other_sha:
                raise AssertionError(f"the second bridge reported {last!r} but the board runs something else")


@dataclass
class LieInFinishOk(Hook):
    """The board answers FINISH with FINISH_OK naming another SHA-256 than the image it was sent."""

    def install(self, ctx: Context) -> None:
        honest_length = len(encode_message(FinishOk(sha256=bytes(32))))

        def wrapper(datagrams: list[bytes]) -> None:
            out = []
            for datagram in datagrams:
                if datagram[:1] == bytes([MessageType.FINISH_OK]) and len(datagram) == honest_length:
                    datagram = encode_message(FinishOk(sha256=bytes(32)))
                    ctx.notes.append("board claimed a verified image with SHA-256 00..00")
                out.append(datagram)
            original(out)

        original = ctx.patch("_notify", wrapper)


@dataclass
class CapMtu(Hook):
    """The link negotiates an ATT MTU of ``mtu`` (what an old phone, or BlueZ's report, gives): 20-byte writes."""

    mtu: int = 23

    def install(self, ctx: Context) -> None:
        device = ctx.board.device
        assert device is not None
        device.gatt_server.max_mtu = self.mtu
        ctx.notes.append(f"ATT MTU {self.mtu}")


# --- Trials -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimTrial:
    fault_class: str
    name: str
    faults: SimFaults = field(default_factory=SimFaults)
    board: dict[str, Any] = field(default_factory=dict)
    """SimBoardConfig overrides."""
    hooks: tuple[Callable[[], Hook], ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    """BridgeConfig overrides."""
    expect: frozenset[Outcome] = GOOD
    exit_codes: frozenset[int] = PUSH_EXIT_CODES
    """The documented exit codes for a clean abort of this trial."""
    max_bytes: int | None = None
    """Push a built image of this size instead when the trial's image is larger (slow links: MTU 23)."""
    server_faults: tuple[Fault, ...] | None = None
    """Not None: ``Bridge.sync`` from a loopback update server (that misbehaves so) instead of ``push``."""
    prefetch: bool = False
    """With a server: ``Bridge.fetch`` into the offline cache before the server starts to misbehave."""
    timeout_s: float = 120.0


def _board_config(trial: SimTrial, images: Images) -> SimBoardConfig:
    values: dict[str, Any] = {
        "name": "rel-1",
        "chip": images.chip,
        "project": images.project,
        "initial_image": images.old,
        "faults": trial.faults,
    }
    values.update(trial.board)
    return SimBoardConfig(**values)


async def _settle(board: SimulatedBoard, timeout_s: float = 15.0) -> None:
    """Wait until the board runs an app again (it may be rebooting after the last event), or is bricked."""
    with contextlib.suppress(TimeoutError):
        await until(lambda: board.booted.is_set() or board.bricked, timeout_s=timeout_s)


def _board_image(board: SimulatedBoard, images: Images) -> str:
    if board.bricked or not board.booted.is_set():
        return "none"
    sha = board.running_sha256
    return "new" if sha == images.new_sha else "old" if sha == images.old_sha else "other"


@dataclass
class _Push:
    last: SyncEvent | None = None
    error: BridgeError | None = None
    crash: BaseException | None = None
    hung: bool = False
    events: int = 0
    resumed_from: list[int] = field(default_factory=list)
    """``resumed_from`` of each upload that followed a reconnection."""


async def _push(ctx: Context, hooks: list[Hook], timeout_s: float) -> _Push:
    result = _Push()
    try:
        async with asyncio.timeout(timeout_s):
            events = (
                ctx.bridge.sync(ctx.board.address)
                if ctx.sync
                else ctx.bridge.push(ctx.board.address, ctx.images.new_path)
            )
            async for event in events:
                result.events += 1
                if not isinstance(event, Uploading):
                    logger.debug("event: %s", event)
                elif isinstance(result.last, Reconnecting):  # the first progress after a reconnection
                    result.resumed_from.append(event.resumed_from)
                result.last = event
                for hook in hooks:
                    await hook.on_event(ctx, event)
    except TimeoutError:
        result.hung = True
    except BridgeError as exc:
        result.error = exc
    except Exception as exc:
        result.crash = exc
    return result


def _classify(
    push: _Push, board: str, tracebacks: list[str], exit_codes: frozenset[int] = PUSH_EXIT_CODES
) -> tuple[Outcome, str]:
    """The outcome of one push and, for ``wrong``, why."""
    if board == "none":
        return Outcome.BRICKED, "the board boots no image"
    if push.crash is not None or tracebacks:
        what = repr(push.crash) if push.crash is not None else "; ".join(tracebacks)
        return Outcome.TRACEBACK, what
    if push.hung:
        return Outcome.HANG, "the push did not end in time"
    if push.error is not None:
        exc = push.error
        problem = check_message(exc.message, exc.hint, int(exc.exit_code), exit_codes)
        return (Outcome.WRONG, problem) if problem else (Outcome.ABORT, "")
    if isinstance(push.last, Confirmed | UpToDate):
        return (Outcome.NEW, "") if board == "new" else (Outcome.WRONG, f"reported {push.last.kind}, runs {board}")
    if isinstance(push.last, RolledBack):
        return (Outcome.OLD, "") if board == "old" else (Outcome.WRONG, f"reported a rollback, runs {board}")
    return Outcome.WRONG, f"the push ended after {push.last!r} without a verdict"


async def run_sim_trial(trial: SimTrial, images: Images, workdir: Path, *, rerun: bool = True) -> TrialResult:
    """Run ``trial`` on a fresh virtual world; never raises for what the trial provokes."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    if trial.max_bytes is not None and images.size > trial.max_bytes:
        images = await asyncio.to_thread(built_images, workdir / "images", trial.max_bytes)
    config = trial_config(workdir / "bridge-data", **trial.config)
    with Stopwatch() as watch, capture_errors() as errors, contextlib.ExitStack() as stack:
        server: FaultyServer | None = None
        if trial.server_faults is not None:
            published = await asyncio.to_thread(publish, workdir / "published", images.new_path)
            server = stack.enter_context(FaultyServer(published.public, []))
            await asyncio.to_thread(trust_server, server.url, published.root_json, data_dir=config.data_dir)
            config = config.replace(server_url=server.url, http_timeout_s=1.0)
        async with VirtualWorld() as world:
            board = await world.add_board(_board_config(trial, images))
            async with Bridge(config, backend=world.backend) as bridge:
                ctx = Context(world, board, images, bridge, sync=server is not None)
                if server is not None:
                    if trial.prefetch:
                        await bridge.fetch()
                        ctx.notes.append("fetched into the offline cache first")
                    server.state.faults = [dataclasses.replace(f) for f in trial.server_faults or ()]
                hooks = [make() for make in trial.hooks]
                for hook in hooks:
                    hook.install(ctx)
                push = await _push(ctx, hooks, trial.timeout_s)
                for task in list(ctx.tasks):
                    with contextlib.suppress(BaseException):
                        async with asyncio.timeout(25):
                            await task
                await _settle(board)
                board_image = _board_image(board, images)
                tracebacks = errors.tracebacks + [repr(f) for f in ctx.failures]
                outcome, why = _classify(push, board_image, tracebacks, trial.exit_codes)
                again: Outcome | None = None
                if rerun and outcome is Outcome.ABORT:
                    for undo in reversed(ctx.restore):
                        undo()
                    board.set_faults(SimFaults())
                    if server is not None:
                        server.heal()
                    second = await _push(ctx, [], trial.timeout_s)
                    await _settle(board)
                    again, _ = _classify(second, _board_image(board, images), errors.tracebacks)
                corrupt = audit_cache(config.data_dir, {images.new_sha: images.new}).corrupt if server else []
                stats = board.stats
                detail = "; ".join(
                    [
                        *ctx.notes,
                        f"{stats.connections} connections",
                        f"{stats.forced_disconnects} forced disconnects" if stats.forced_disconnects else "",
                        f"{stats.power_losses} power losses" if stats.power_losses else "",
                        f"{stats.resent_bytes:,} bytes resent" if stats.resent_bytes else "",
                        why,
                        *corrupt,
                    ]
                ).strip("; ")
    error = push.error
    return TrialResult(
        fault_class=trial.fault_class,
        name=trial.name,
        outcome=outcome,
        expected=trial.expect,
        exit_code=int(error.exit_code) if error is not None else _EXIT_BY_OUTCOME.get(outcome),
        message=error.message if error is not None else "",
        hint=error.hint if error is not None else "",
        board=board_image,
        detail=detail.replace("; ; ", "; "),
        rerun=again,
        corrupt_files=len(corrupt),
        resumed_from=tuple(push.resumed_from),
        duration_s=watch.elapsed_s,
    )


# --- The catalogue ------------------------------------------------------------------------------------------------


def _frames(rate: float, size: int, seed: int) -> frozenset[int]:
    """Frame numbers hit by a fault of ``rate``: a fixed random sample of the frames a transfer of ``size`` sends."""
    frames = size // 489 + 1  # 495-byte writes carry 489 image bytes
    rng = random.Random(seed)
    return frozenset(n for n in range(1, int(frames * 1.3)) if rng.random() < rate)


def disconnect_offsets(size: int, count: int) -> list[int]:
    """``count`` offsets spread over the image, plus its first and last bytes (deterministic)."""
    step = size / count
    spread = {int(i * step + step / 3) for i in range(count)}
    return sorted(spread | {0, 1, size - 1})


def sim_trials(size: int, *, full: bool) -> list[SimTrial]:
    """Every end-to-end trial for an image of ``size`` bytes; ``full`` False gives the bounded CI selection."""
    new_only = frozenset({Outcome.NEW})
    trials: list[SimTrial] = []
    count = 50 if full else 6
    for offset in disconnect_offsets(size, count):
        trials.append(
            SimTrial(
                "e2e: disconnect during upload",
                f"at byte {offset:,}",
                SimFaults(disconnect_at_offsets=(offset,)),
                expect=new_only,
            )
        )
    many = tuple(disconnect_offsets(size, 8)[1:-1])
    trials.append(
        SimTrial(
            "e2e: disconnect during upload",
            f"{len(many)} disconnects in one upload",
            SimFaults(disconnect_at_offsets=many),
            config={"reconnect_attempts": 3},
            expect=new_only,
        )
    )
    slow_erase = {"erase_strategy": EraseStrategy.UP_FRONT, "time_scale": 0.1}
    link_lost = frozenset({5})
    trials += [
        SimTrial(
            "e2e: disconnect at a command",
            "during BEGIN (erasing)",
            board=slow_erase,
            hooks=(lambda: DropLinkInBoardPhase("begin"),),
            expect=new_only,
        ),
        SimTrial(
            "e2e: disconnect at a command",
            "during FINISH (verifying)",
            hooks=(lambda: DropLinkInBoardPhase("finish"),),
            exit_codes=link_lost,
        ),
        SimTrial(
            "e2e: disconnect at a command",
            "during COMMIT (boot switch)",
            hooks=(lambda: DropLinkInBoardPhase("commit"),),
            exit_codes=link_lost,
        ),
        SimTrial(
            "e2e: disconnect at a command",
            "after the reboot, before confirmation",
            hooks=(DropLinkAfterReboot,),
            expect=new_only,
        ),
    ]
    power = range(0, size, _BLOCK) if full else [0, _BLOCK, size // 2 // _BLOCK * _BLOCK, (size - 1) // _BLOCK * _BLOCK]
    for offset in power:
        trials.append(
            SimTrial(
                "e2e: power loss during upload",
                f"at byte {offset:,}",
                SimFaults(power_loss_at_offset=offset),
                expect=new_only,
            )
        )
    trials += [
        SimTrial(
            "e2e: power loss at the boot switch",
            "before the otadata write",
            hooks=(lambda: PowerCutAtCommit("before"),),
            exit_codes=link_lost,
        ),
        SimTrial(
            "e2e: power loss at the boot switch",
            "after the otadata write",
            hooks=(lambda: PowerCutAtCommit("after"),),
            exit_codes=link_lost,
        ),
        SimTrial(
            "e2e: power loss at the boot switch",
            "during the new image's self-test",
            board={"self_test_s": 0.3},
            hooks=(PowerCutWhilePendingVerify,),
            expect=frozenset({Outcome.OLD}),
        ),
    ]
    rates = (0.01, 0.05)
    seeds = (1, 2) if full else (1,)
    knobs = {"drop": "drop_frames", "duplicate": "duplicate_frames", "corrupt": "corrupt_frames"}
    for kind, knob in knobs.items():
        for rate in rates:
            for seed in seeds:
                frames = _frames(rate, size, seed * 100 + int(rate * 1000))
                knob_value: dict[str, Any] = {knob: frames}
                trials.append(
                    SimTrial(
                        "e2e: data frames lost / duplicated / corrupted",
                        f"{kind} {rate:.0%} (seed {seed}, {len(frames)} frames)",
                        SimFaults(**knob_value),
                        expect=new_only,
                    )
                )
    protocol_broken = frozenset({7})
    trials += [
        SimTrial(
            "e2e: link limits",
            "ATT MTU 23 (20-byte writes)",
            hooks=(CapMtu,),
            config={"ack_timeout_s": 10.0},
            expect=new_only,
            max_bytes=256 * 1024 if full else 64 * 1024,
            timeout_s=300.0,
        ),
        SimTrial(
            "e2e: link limits",
            "board accepts frames of 64 bytes only",
            board={"max_frame_bytes": 64},
            expect=new_only,
            max_bytes=512 * 1024 if full else 128 * 1024,
            timeout_s=300.0,
        ),
        SimTrial(
            "e2e: link limits",
            "board buffer of 2 KB behind a 16 KB window",
            SimFaults(rx_buffer_bytes=2048),
            expect=new_only,
        ),
        SimTrial(
            "e2e: lying board",
            "ACKs 4 KB beyond what it wrote",
            SimFaults(ack_lie_bytes=4096),
            expect=frozenset({Outcome.ABORT}),
            exit_codes=protocol_broken,
        ),
        SimTrial(
            "e2e: lying board",
            "FINISH_OK with another SHA-256",
            hooks=(LieInFinishOk,),
            expect=frozenset({Outcome.ABORT}),
            exit_codes=protocol_broken,
        ),
        SimTrial(
            "e2e: board resets and stalls",
            "reset at 40 % of the upload",
            hooks=(lambda: AtProgress(0.4, "reboot"),),
            expect=new_only,
        ),
        SimTrial(
            "e2e: board resets and stalls",
            "erase of the whole image up front, flash 2x slow (several seconds)",
            SimFaults(flash_slowdown=2.0),
            board={"erase_strategy": EraseStrategy.UP_FRONT, "time_scale": 1.0},
            expect=new_only,
            timeout_s=180.0,
        ),
        SimTrial(
            "e2e: board resets and stalls",
            "flash stalls 3 s mid-upload (past the ACK timeout)",
            board={"erase_strategy": EraseStrategy.BLOCK_AHEAD_64K, "time_scale": 1.0},
            hooks=(lambda: AtProgress(0.5, "stall", stall_s=3.0),),
            config={"ack_timeout_s": 2.0},
            expect=new_only,
            timeout_s=180.0,
        ),
        SimTrial(
            "e2e: second bridge",
            "asks the connected board for its status",
            hooks=(lambda: AtProgress(0.3, "second-status"),),
            expect=new_only,
        ),
        SimTrial(
            "e2e: second bridge",
            "pushes another image to the connected board",
            hooks=(lambda: AtProgress(0.3, "second-push"),),
            expect=new_only,
        ),
        SimTrial(
            "e2e: second bridge",
            "reads the board while the first reconnects",
            SimFaults(disconnect_at_offsets=(size * 2 // 5,)),
            hooks=(lambda: SecondBridgeInTheGap("status"),),
            expect=new_only,
        ),
        SimTrial(
            "e2e: second bridge",
            "installs another image while the first reconnects",
            SimFaults(disconnect_at_offsets=(size * 2 // 5,)),
            hooks=(lambda: SecondBridgeInTheGap("push"),),
            expect=new_only,
        ),
        SimTrial(
            "e2e: new firmware fails",
            "self-test fails (rolled back)",
            board={"self_test": SelfTest.FAIL},
            expect=frozenset({Outcome.OLD}),
        ),
    ]

    # The whole chain: `Bridge.sync` downloads from a loopback TUF server and installs over BLE.
    def via_server(name: str, server_faults: tuple[Fault, ...], expect: frozenset[Outcome], **kw: Any) -> SimTrial:
        return SimTrial(
            "e2e: sync through a faulty server",
            name,
            server_faults=server_faults,
            expect=expect,
            exit_codes=SYNC_EXIT_CODES,
            max_bytes=256 * 1024,
            **kw,
        )

    trials += [
        via_server(
            "link drops mid-upload (server healthy)",
            (),
            new_only,
            faults=SimFaults(disconnect_at_offsets=(100_000,)),
        ),
        via_server(
            "download cut at 40 %, then resumed",
            (Fault("truncate", "image", at=100_000, times=1),),
            frozenset({Outcome.ABORT}),
        ),
        via_server(
            "server down after `bridge fetch`: installs from the offline cache",
            (Fault("status", "timestamp", status=503),),
            new_only,
            prefetch=True,
        ),
        via_server("server serves a tampered image", (Fault("garbage", "image"),), frozenset({Outcome.ABORT})),
    ]
    if full:
        trials += [
            SimTrial(
                "e2e: board resets and stalls",
                f"reset at {pct} % of the upload",
                hooks=(functools.partial(AtProgress, pct / 100, "reboot"),),
                expect=new_only,
            )
            for pct in (5, 75, 99)
        ]
        trials.append(
            SimTrial(
                "e2e: new firmware fails",
                "never confirms itself, then resets",
                board={"self_test": SelfTest.NO_CONFIRM},
                config={"reboot_timeout_s": 3.0},
            )
        )
    return trials
