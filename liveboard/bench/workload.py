"""Socket clients that keep a stack busy while it is broken: ``liveboard bench soak`` and the
chaos suite (``tests/chaos``) both run this load, real python-socketio clients.

Each ``WorkloadClient`` is one user on one socket (to its home replica, or the other one while its
home is down, as a load balancer would send it), joined to every board of the scenario. It keeps
its own view of each board — the ``join_board`` snapshot (or the events since its ``since_seq``)
with every live event applied strictly in ``seq`` order — and writes down every gap, duplicate or
unreadable event it meets, instead of raising inside a socket callback where nobody would see it.

``Workload`` runs one operation loop per client over every mutation type: each operation has its
own ``client_op_id`` (also its correlation id, so its events can be found in Postgres) and is
re-sent with the same id and payload when its ack times out, the socket drops before the ack, or
the ack says ``unavailable`` — exactly what ``@liveboard/client`` does. ``pause()`` stops new
operations and waits until every one in flight has its final answer, so invariants are checked on
a quiet system.

With ``churn`` (the soak), a client now and then leaves a board and joins it again with its
``since_seq``, or drops its socket and reconnects, between its operations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio

from libs.common.events import BOARD_EVENT_TYPES

from .boardview import Replay

NS = "/workspace"
#: Longer than realtime's own wait for boards (``REALTIME_BOARDS_TIMEOUT``, 5 s).
ACK_TIMEOUT = 7.0
#: Ack errors that mean "try again with the same id"; anything else but not_found is a finding.
RETRY_CODES = frozenset({"unavailable", "rate_limited"})
#: Refusals an operation may get legitimately: another client deleted its card first.
ACCEPTED_REFUSALS = frozenset({"not_found"})

log = logging.getLogger(__name__)


class NotConnected(Exception):
    """The socket dropped (or is not up yet): the operation's ack is lost, send it again."""


@dataclass
class User:
    id: str
    email: str
    token: str


@dataclass
class Op:
    op_id: str
    client: str
    user_id: str
    event: str
    board_id: str
    payload: dict[str, Any]
    attempts: int = 0
    #: ``"ok"``, a refusal code, or None while unresolved.
    outcome: str | None = None
    result: Any = None
    retried_for: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0


@dataclass
class BoardView:
    board_id: str
    organization_id: str
    replay: Replay | None = None
    joining: bool = True
    buffer: list[dict[str, Any]] = field(default_factory=list)
    joins: int = 0
    #: Left on purpose (churn) and not joined again yet: no operations on it, no events expected.
    left: bool = False

    @property
    def seq(self) -> int:
        return self.replay.seq if self.replay else 0


def replay_of(snapshot: dict[str, Any]) -> Replay:
    return Replay.from_snapshot(snapshot)


class WorkloadClient:
    def __init__(self, name: str, user: User, replicas: list[str], boards: dict[str, str]) -> None:
        self.name, self.user = name, user
        self.replicas = replicas  # the home replica first
        self.views = {board: BoardView(board, org) for board, org in boards.items()}
        self.violations: list[str] = []
        self.sio: socketio.AsyncClient | None = None
        self.replica: str | None = None
        self.connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._stop = False
        self.connects = 0
        #: Deliberate churn: boards left and joined again, sockets dropped on purpose.
        self.leaves = 0
        self.dropped = 0
        self._rejoins: set[asyncio.Task[None]] = set()

    # --- the connection -------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected and joined until ``stop()``: reconnect (home first) whenever it drops."""
        while not self._stop:
            sio = await self._connect()
            if sio is None:
                continue
            await self._lost.wait()
            self.connected.clear()
            for task in list(self._rejoins):
                task.cancel()
            with contextlib.suppress(Exception):  # the transport is already gone
                await sio.disconnect()

    async def _connect(self) -> socketio.AsyncClient | None:
        for url in self.replicas:
            if self._stop:
                return None
            sio = socketio.AsyncClient(reconnection=False)
            self._lost = asyncio.Event()
            self._register(sio)
            try:
                await sio.connect(
                    url, namespaces=[NS], auth={"token": self.user.token}, transports=["websocket"], wait_timeout=5
                )
            except (socketio.exceptions.ConnectionError, OSError, TimeoutError):
                with contextlib.suppress(Exception):
                    await sio.disconnect()
                continue
            self.sio, self.replica = sio, url
            self.connects += 1
            for view in self.views.values():
                view.joining = True
            try:
                for view in self.views.values():
                    await self._join(view)
            except NotConnected:
                continue
            self.connected.set()
            return sio
        await asyncio.sleep(0.3)
        return None

    def _register(self, sio: socketio.AsyncClient) -> None:
        lost = self._lost

        @sio.on("disconnect", namespace=NS)
        async def on_disconnect(reason: Any = None) -> None:
            lost.set()

        @sio.on("*", namespace=NS)
        async def on_any(event: str, data: Any = None) -> None:
            if event in BOARD_EVENT_TYPES:
                self._on_event(data)
            elif event == "resync_required":
                view = self.views[data["board_id"]]
                view.joining = True  # what follows is buffered until the re-join says where we are
                task = asyncio.create_task(self._rejoin(view))
                self._rejoins.add(task)
                task.add_done_callback(self._rejoins.discard)
            elif event in ("session_expired", "server_shutdown"):
                self.violations.append(f"{self.name}: unexpected {event} {data}")

    async def call(self, event: str, data: dict[str, Any], timeout: float = ACK_TIMEOUT) -> Any:
        """The ack of ``event``; ``NotConnected`` if the socket is not up or drops before it."""
        sio, lost = self.sio, self._lost
        if sio is None or lost.is_set() or not sio.connected:
            raise NotConnected
        call = asyncio.ensure_future(sio.call(event, data, namespace=NS, timeout=timeout))
        dropped = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait([call, dropped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
        if not call.done():
            call.cancel()
            raise NotConnected
        try:
            return call.result()
        except socketio.exceptions.BadNamespaceError as exc:
            raise NotConnected from exc
        except socketio.exceptions.TimeoutError as exc:
            raise TimeoutError(f"no ack for {event} in {timeout}s") from exc

    async def stop(self) -> None:
        self._stop = True
        self._lost.set()
        if self.sio is not None and self.sio.connected:
            await self.sio.disconnect()

    # --- joining and the board streams ----------------------------------------------------

    async def _join(self, view: BoardView) -> None:
        """(Re-)join with ``since_seq`` when there is a view already; retried while unavailable."""
        while True:
            view.joining, view.buffer = True, []
            request: dict[str, Any] = {"board_id": view.board_id, "organization_id": view.organization_id}
            if view.replay is not None:
                request["since_seq"] = view.replay.seq
            try:
                ack = await self.call("join_board", request, timeout=10)
            except TimeoutError:
                continue
            if ack.get("ok"):
                break
            if ack["error"]["code"] not in RETRY_CODES:
                self.violations.append(f"{self.name}: join_board refused: {ack['error']}")
                return
            await asyncio.sleep(0.3)
        data = ack["data"]
        view.joins += 1
        view.left = False
        if "snapshot" in data:
            view.replay = replay_of(data["snapshot"])
        else:
            for envelope in data["events"]:
                self._apply(view, envelope, "join events")
        if view.seq != data["seq"]:
            self.violations.append(f"{self.name}: join of {view.board_id} at seq {data['seq']}, view at {view.seq}")
        buffered, view.buffer, view.joining = view.buffer, [], False
        for envelope in buffered:
            if envelope["seq"] > view.seq:  # older ones came to the membership this join replaced
                self._apply(view, envelope, "live")

    async def leave_and_rejoin(self, view: BoardView, away: float) -> None:
        """Leave ``view``'s board, stay away ``away`` seconds, join again with ``since_seq``."""
        try:
            ack = await self.call("leave_board", {"board_id": view.board_id}, timeout=10)
        except (NotConnected, TimeoutError):
            return  # a reconnect joins every board again anyway
        if not ack.get("ok"):
            self.violations.append(f"{self.name}: leave_board refused: {ack['error']}")
            return
        view.left, view.joining = True, True  # nothing more may arrive; anything that does is kept aside
        self.leaves += 1
        await asyncio.sleep(away)
        if view.left:  # else a reconnect meanwhile joined it again
            with contextlib.suppress(NotConnected):
                await self._join(view)

    async def drop(self) -> None:
        """Close the socket on purpose; ``run`` reconnects (home replica first) and re-joins."""
        if self.sio is None or self._lost.is_set():
            return
        self.dropped += 1
        self._lost.set()
        self.connected.clear()
        with contextlib.suppress(Exception):
            await self.sio.disconnect()

    async def _rejoin(self, view: BoardView) -> None:
        try:
            await self._join(view)
        except NotConnected:
            return  # the reconnect re-joins every board anyway

    def _on_event(self, envelope: dict[str, Any]) -> None:
        view = self.views.get(envelope.get("board_id", ""))
        if view is None:
            self.violations.append(f"{self.name}: event of a board it never joined: {envelope}")
            return
        if view.joining:
            view.buffer.append(envelope)
            return
        self._apply(view, envelope, "live")

    def _apply(self, view: BoardView, envelope: dict[str, Any], how: str) -> None:
        seq = envelope.get("seq")
        if view.replay is None:
            self.violations.append(f"{self.name}: {how} event before any snapshot of {view.board_id}")
            return
        if seq != view.seq + 1:
            kind = "duplicate" if isinstance(seq, int) and seq <= view.seq else "gap"
            self.violations.append(f"{self.name}: {kind} on {view.board_id} ({how}): seq {seq} after {view.seq}")
            return
        try:
            view.replay.apply(envelope)
        except (AssertionError, KeyError) as exc:  # an event that does not fit the view: recorded
            self.violations.append(f"{self.name}: cannot apply {envelope['event_type']} seq {seq}: {exc!r}")


class Workload:
    """Operations of every mutation type from every client, retried with their ids."""

    def __init__(
        self,
        clients: list[WorkloadClient],
        members: list[str],
        seed: int = 15,
        *,
        churn: float = 0.0,
        think: tuple[float, float] = (0.05, 0.3),
    ) -> None:
        self.clients = clients
        self.members = members
        self.ops: list[Op] = []
        self.random = random.Random(seed)
        #: Chance, before each operation, that the client leaves and re-joins a board or drops its
        #: socket instead (half each).
        self.churn = churn
        #: Seconds a client waits between its operations (uniform).
        self.think = think
        self._churning = 0
        self._go = asyncio.Event()
        self._go.set()
        self._stop = False
        self._tasks: list[asyncio.Task[None]] = []
        self.in_flight: set[str] = set()

    def start(self) -> None:
        for client in self.clients:
            self._tasks.append(asyncio.create_task(client.run(), name=f"workload-conn-{client.name}"))
            self._tasks.append(asyncio.create_task(self._loop(client), name=f"workload-ops-{client.name}"))

    async def stop(self) -> None:
        self._stop = True
        self._go.set()
        for client in self.clients:
            await client.stop()
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError)]
        assert not failures, f"workload tasks failed: {failures!r}"

    async def pause(self, timeout: float = 60.0) -> None:
        """No new operations; wait until every sent one has its final answer."""
        self._go.clear()
        deadline = time.monotonic() + timeout
        while self.in_flight or self._churning:
            if time.monotonic() > deadline:
                stuck = [op for op in self.ops if op.op_id in self.in_flight]
                raise AssertionError(f"operations never answered: {[(o.event, o.retried_for) for o in stuck]}")
            await asyncio.sleep(0.05)
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"{task.get_name()} failed") from task.exception()

    def resume(self) -> None:
        self._go.set()

    async def wait_in_flight(self, count: int = 1, timeout: float = 20.0) -> int:
        """Until at least ``count`` operations are sent and unanswered (a fault must hit some)."""
        deadline = time.monotonic() + timeout
        while len(self.in_flight) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"never {count} operations in flight at once")
            await asyncio.sleep(0.002)
        return len(self.in_flight)

    async def burst(self, count: int, *, acked: int) -> int:
        """``count`` extra operations at once, spread over the clients; returns when ``acked`` of
        them are answered ``ok`` (the rest still in flight: the caller's fault hits those)."""
        ops = []
        for index in range(count):
            client = self.clients[index % len(self.clients)]
            op = self._next(client)
            self.ops.append(op)
            self.in_flight.add(op.op_id)
            ops.append(op)
            task = asyncio.create_task(self._perform(client, op), name=f"workload-burst-{op.op_id}")
            task.add_done_callback(lambda _, op=op: self.in_flight.discard(op.op_id))
            self._tasks.append(task)
        deadline = time.monotonic() + 30
        while sum(op.outcome == "ok" for op in ops) < acked:
            assert time.monotonic() < deadline, f"a burst of {count} got fewer than {acked} acks in 30s"
            await asyncio.sleep(0.002)
        return sum(op.outcome == "ok" for op in ops)

    async def _loop(self, client: WorkloadClient) -> None:
        await client.connected.wait()  # its views of the boards are what operations are made from
        while not self._stop:
            await self._go.wait()
            if self._stop:
                return
            if self.churn and self.random.random() < self.churn:
                await self._churn(client)
                continue
            op = self._next(client)
            self.ops.append(op)
            self.in_flight.add(op.op_id)
            try:
                await self._perform(client, op)
            finally:
                self.in_flight.discard(op.op_id)
            await asyncio.sleep(self.random.uniform(*self.think))

    async def _churn(self, client: WorkloadClient) -> None:
        self._churning += 1
        try:
            joined = [view for view in client.views.values() if not view.left]
            if self.random.random() < 0.5 and len(joined) > 1:
                await client.leave_and_rejoin(self.random.choice(joined), self.random.uniform(0.2, 1.5))
            else:
                await client.drop()
                await self._reconnected(client, 10.0)
        finally:
            self._churning -= 1

    async def _perform(self, client: WorkloadClient, op: Op) -> None:
        op.started = time.monotonic()
        request = {**op.payload, "board_id": op.board_id, "client_op_id": op.op_id, "correlation_id": op.op_id}
        while True:
            op.attempts += 1
            try:
                ack = await client.call(op.event, request)
            except NotConnected:
                op.retried_for.append("disconnected")
                await self._reconnected(client)
                continue
            except TimeoutError:
                op.retried_for.append("timeout")
                continue
            if ack.get("ok"):
                op.outcome, op.result = "ok", ack["data"]
                break
            code = ack["error"]["code"]
            if code in RETRY_CODES:
                op.retried_for.append(code)
                await asyncio.sleep(0.2)
                continue
            op.outcome, op.result = code, ack["error"]
            break
        op.finished = time.monotonic()

    async def _reconnected(self, client: WorkloadClient, timeout: float = 1.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.connected.wait(), timeout)

    # --- what to do next ------------------------------------------------------------------

    def _next(self, client: WorkloadClient) -> Op:
        rnd = self.random
        view = rnd.choice([v for v in client.views.values() if not v.left] or list(client.views.values()))
        replay = view.replay
        cards = sorted(replay.cards) if replay else []
        columns = sorted(replay.columns) if replay else []
        kinds = ["task_moved"] * 4 + ["task_updated"] * 2 + ["task_assigned"] * 2 + ["task_commented"] * 2
        kinds += ["task_created"] * (4 if len(cards) < 8 else 1)
        kinds += ["task_deleted"] * (1 if len(cards) > 6 else 0)
        kind = rnd.choice(kinds) if cards else "task_created"
        assert columns, f"{client.name} has no view of {view.board_id} to choose an operation from"
        op_id = "op-" + uuid.uuid4().hex
        payload: dict[str, Any]
        if kind == "task_created":
            column = rnd.choice(columns) if columns else ""
            payload = {"column_id": column, "title": f"card {op_id[-6:]}", "labels": [rnd.choice(["a", "b", "c"])]}
        else:
            task = rnd.choice(cards)
            if kind == "task_moved":
                to = rnd.choice(columns)
                size = sum(1 for c in replay.cards.values() if c["column_id"] == to)  # type: ignore[union-attr]
                payload = {"task_id": task, "to_column_id": to, "position": rnd.randint(0, size)}
            elif kind == "task_updated":
                payload = {"task_id": task, "changes": {"title": f"edited {op_id[-6:]}"}}
            elif kind == "task_assigned":
                payload = {"task_id": task, "assignee_ids": rnd.sample(self.members, rnd.randint(0, 2))}
            elif kind == "task_commented":
                payload = {"task_id": task, "body": f"comment {op_id[-6:]}"}
            else:
                payload = {"task_id": task}
        return Op(op_id, client.name, client.user.id, kind, view.board_id, payload)

    # --- summaries ------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        outcomes = Counter(op.outcome for op in self.ops)
        return {
            "ops": len(self.ops),
            "outcomes": dict(outcomes),
            "retried": sum(1 for op in self.ops if op.attempts > 1),
            "by_type": dict(Counter(op.event for op in self.ops if op.outcome == "ok")),
            "reconnects": sum(c.connects - 1 for c in self.clients),
            "dropped_on_purpose": sum(c.dropped for c in self.clients),
            "leaves": sum(c.leaves for c in self.clients),
            "joins": sum(view.joins for c in self.clients for view in c.views.values()),
        }


async def call(session: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json(content_type=None)
