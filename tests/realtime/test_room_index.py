"""The socket -> rooms index behaves exactly like python-socketio's own manager, only faster.

Random sequences of connects, joins, leaves and disconnects are applied to a stock
``AsyncManager`` and to the same class with ``IndexedRooms``: the room tables, each socket's
rooms and the pending lists must stay identical after every step.
"""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from socketio.async_manager import AsyncManager
from socketio.base_manager import BaseManager

from services.realtime.room_index import IndexedRooms

NAMESPACE = "/workspace"


class Indexed(IndexedRooms, AsyncManager):
    pass


def _manager(cls: type) -> AsyncManager:
    """A manager whose socket ids are sid-0, sid-1, ... (its server only has to make ids)."""
    manager = cls()
    ids = itertools.count()
    manager.server = SimpleNamespace(eio=SimpleNamespace(generate_id=lambda: f"sid-{next(ids)}"))
    return manager


def _connect(manager: AsyncManager, eio_sid: str) -> str:
    """AsyncManager.connect without the event loop (its synchronous BaseManager steps)."""
    sid = BaseManager.pre_connect(manager, eio_sid, NAMESPACE)
    return BaseManager.connect(manager, sid, NAMESPACE)


def _plain(manager: AsyncManager) -> dict:
    return {ns: {room: dict(members) for room, members in rooms.items()} for ns, rooms in manager.rooms.items()}


steps = st.lists(
    st.tuples(st.sampled_from(["connect", "enter", "leave", "disconnect"]), st.integers(0, 5), st.integers(0, 3)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_indexed_manager_matches_the_stock_manager(sequence):
    stock, indexed = _manager(AsyncManager), _manager(Indexed)
    sids: dict[int, str] = {}  # our socket number -> its sid (the same in both managers)
    for action, number, room_number in sequence:
        room = f"room-{room_number}"
        if action == "connect" and number not in sids:
            sids[number] = _connect(stock, f"eio-{number}")
            assert _connect(indexed, f"eio-{number}") == sids[number]
        elif action != "connect" and number in sids:
            sid = sids[number]
            for manager in (stock, indexed):
                if action == "enter":
                    manager.basic_enter_room(sid, NAMESPACE, room)
                elif action == "leave":
                    manager.basic_leave_room(sid, NAMESPACE, room)
                else:
                    manager.basic_disconnect(sid, NAMESPACE)
            if action == "disconnect":
                del sids[number]
        assert _plain(indexed) == _plain(stock)
        for sid in sids.values():
            assert sorted(indexed.get_rooms(sid, NAMESPACE)) == sorted(stock.get_rooms(sid, NAMESPACE))
    assert indexed.pending_connect == stock.pending_connect == {}
    assert indexed.pending_disconnect == stock.pending_disconnect == {}


def test_disconnect_does_not_scan_every_room():
    """10,000 sockets in their own rooms: the stock manager scans all of them per disconnect."""
    indexed = _manager(Indexed)
    sids = [_connect(indexed, f"eio-{i}") for i in range(10_000)]
    for sid in sids:
        indexed.basic_enter_room(sid, NAMESPACE, f"user:{sid}")
    began = time.process_time()
    for sid in sids:
        indexed.basic_disconnect(sid, NAMESPACE)
    indexed_seconds = time.process_time() - began
    assert indexed.rooms == {}
    stock = _manager(AsyncManager)
    sids = [_connect(stock, f"eio-{i}") for i in range(10_000)]
    for sid in sids:
        stock.basic_enter_room(sid, NAMESPACE, f"user:{sid}")
    began = time.process_time()
    for sid in sids[:500]:  # a twentieth is enough to show the difference
        stock.basic_disconnect(sid, NAMESPACE)
    stock_seconds = (time.process_time() - began) * 20
    assert indexed_seconds * 20 < stock_seconds, (indexed_seconds, stock_seconds)
