"""A socket -> rooms index for python-socketio's manager.

``BaseManager.basic_disconnect`` finds a socket's rooms by copying and scanning every room of the
namespace, and ``get_rooms`` scans them too: O(rooms) per socket, so when 10,000 sockets drop at
once (a network blip, a deploy) the process spends minutes of CPU in that loop and serves no one.
Keeping each socket's rooms beside ``manager.rooms`` makes both O(rooms of that socket). Every
change to ``manager.rooms`` goes through ``basic_enter_room``/``basic_leave_room``, so the index
cannot drift from it.
"""

from __future__ import annotations

from typing import Any


class IndexedRooms:
    """Mixin for a python-socketio manager class (put it first in the bases)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rooms_of: dict[tuple[str, str], set[Any]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:  # type: ignore[attr-defined]
            return
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self._rooms_of.pop((namespace, sid), None)
        # The rest is BaseManager.basic_disconnect unchanged (callbacks and pending lists).
        self.callbacks.pop(sid, None)  # type: ignore[attr-defined]
        for pending in (self.pending_connect, self.pending_disconnect):  # type: ignore[attr-defined]
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]
