"""An EVENT whose JSON orjson refuses but the stdlib reads reaches the namespace, to get its ack.

JavaScript clients send such events without any malice: ``JSON.stringify`` writes a string cut
in the middle of an emoji as a lone ``\\ud83d``, which orjson (the fast path's decoder) refuses,
and python-socketio's own client writes ``NaN`` and ``Infinity`` as bare literals. Losing the
packet at decoding leaves the client waiting for an ack that never comes (and the server's log
with a traceback). So an EVENT packet whose JSON array fails the strict decoder is decoded again
by the stdlib's lenient rules, and the namespace then refuses it with ``invalid_payload`` naming
the field (``payloads.json_problem``). Anything the lenient decoder cannot read either, every
other packet type, and framing errors stay undecodable: the protocol layer closes the transport
(``server.LiveboardAsyncServer._handle_eio_message``), as Node's socket.io-parser does.
Well-formed packets are decoded once, exactly as before.
"""

from __future__ import annotations

import json
from typing import Any

from socketio import packet as sio_packet

#: Lenient re-decoding is for messages a handler could answer (the size cap is checked after
#: decoding, and answered ``payload_too_large``); longer undecodable ones are not parsed twice.
LENIENT_MAX_CHARS = 1 << 20


class _Undecodable(ValueError):
    """The JSON part of a packet failed the strict decoder (a ValueError, like its own errors)."""

    def __init__(self, text: Any, reason: str) -> None:
        super().__init__(reason)
        self.text = text


def tolerant(base: type[sio_packet.Packet]) -> type[sio_packet.Packet]:
    """``base`` (the server's packet class) decoding EVENT packets as the module says."""
    strict = base.json

    class _Json:
        @staticmethod
        def dumps(obj: Any, **kwargs: Any) -> Any:
            return strict.dumps(obj, **kwargs)

        @staticmethod
        def loads(text: Any, **kwargs: Any) -> Any:
            try:
                return strict.loads(text, **kwargs)
            except (ValueError, RecursionError) as exc:
                raise _Undecodable(text, str(exc)) from None

    class TolerantPacket(base):  # type: ignore[misc, valid-type]
        json = _Json

        def decode(self, encoded_packet: Any) -> int:
            try:
                return super().decode(encoded_packet)
            except _Undecodable as exc:
                data = _lenient(exc.text) if self.packet_type == sio_packet.EVENT else None
                if data is None:
                    raise ValueError(f"undecodable JSON: {exc}") from None
                self.data = data
                return 0

    TolerantPacket.__name__ = TolerantPacket.__qualname__ = f"Tolerant{base.__name__}"
    return TolerantPacket


def _lenient(text: Any) -> list[Any] | None:
    """The event's ``[name, ...args]`` by the stdlib's rules, or None when not even they apply."""
    if isinstance(text, bytes | bytearray):
        return None
    if not isinstance(text, str) or len(text) > LENIENT_MAX_CHARS or not text.startswith("["):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, list) else None
