"""Realtime configuration: the seed's ``WEBSOCKET_*`` variables with the seed's field names.

``WebSocketConfig(max_concurrent_connections=5000, ...)`` works in code exactly as in the seed
document; ``load_settings(Settings)`` reads the same fields from the environment.
"""

from __future__ import annotations

import re

from pydantic import field_validator

from libs.common.settings import CommonSettings, StrList, env


class WebSocketConfig(CommonSettings):
    max_concurrent_connections: int = env(
        "max_concurrent_connections", "WEBSOCKET_MAX_CONNECTIONS", default=10000, ge=1
    )
    connection_timeout: float = env("connection_timeout", "WEBSOCKET_CONNECTION_TIMEOUT", default=300, gt=0)
    rate_limit_connections: int = env("rate_limit_connections", "WEBSOCKET_RATE_LIMIT_CONNECTIONS", default=100, ge=1)
    rate_limit_messages: int = env("rate_limit_messages", "WEBSOCKET_RATE_LIMIT_MESSAGES", default=1000, ge=1)
    enforce_authentication: bool = env("enforce_authentication", "WEBSOCKET_ENFORCE_AUTHENTICATION", default=True)
    validate_scope: bool = env("validate_scope", "WEBSOCKET_VALIDATE_SCOPE", default=True)
    audit_events: bool = env("audit_events", "WEBSOCKET_AUDIT_EVENTS", default=True)
    max_rooms_per_connection: int = env(
        "max_rooms_per_connection", "WEBSOCKET_MAX_ROOMS_PER_CONNECTION", default=100, ge=1
    )
    max_connections_per_room: int = env(
        "max_connections_per_room", "WEBSOCKET_MAX_CONNECTIONS_PER_ROOM", default=1000, ge=1
    )
    cleanup_interval: float = env("cleanup_interval", "WEBSOCKET_CLEANUP_INTERVAL", default=300, gt=0)
    max_message_bytes: int = env("max_message_bytes", "WEBSOCKET_MAX_MESSAGE_BYTES", default=65536, ge=256)
    allowed_origins: StrList = env("allowed_origins", "WEBSOCKET_ALLOWED_ORIGINS", default=())
    #: Seconds a SIGTERM-ed process spends telling clients to reconnect elsewhere before it exits.
    drain_seconds: float = env("drain_seconds", "REALTIME_DRAIN_SECONDS", default=20, ge=0)
    #: Seconds before a token's expiry at which the socket is sent ``token_expiring``.
    token_expiry_warning: float = env("token_expiry_warning", "WEBSOCKET_TOKEN_EXPIRY_WARNING", default=60, ge=0)
    #: Messages of up to this size reach the handlers (which answer ``payload_too_large`` above
    #: ``max_message_bytes``); larger ones close the transport, as in every Socket.IO server.
    transport_max_bytes: int = env("transport_max_bytes", "WEBSOCKET_TRANSPORT_MAX_BYTES", default=16 << 20)
    #: Seconds an Engine.IO transport has to get a namespace CONNECT admitted (with a valid token)
    #: before it is closed; also after it leaves its last namespace (services/realtime/protocol.py).
    auth_timeout: float = env("auth_timeout", "WEBSOCKET_AUTH_TIMEOUT", default=5.0, gt=0)
    #: Engine.IO heartbeat: a ping every ``ping_interval`` seconds, answered within ``ping_timeout``.
    ping_interval: float = env("ping_interval", "WEBSOCKET_PING_INTERVAL", default=25.0, gt=0)
    ping_timeout: float = env("ping_timeout", "WEBSOCKET_PING_TIMEOUT", default=20.0, gt=0)
    boards_timeout: float = env("boards_timeout", "REALTIME_BOARDS_TIMEOUT", default=5.0, gt=0)
    #: Off: stock python-socketio delivery (``services/realtime/fastpath.py``), for comparison.
    fast_path: bool = env("fast_path", "REALTIME_FAST_PATH", default=True)

    @field_validator("allowed_origins")
    @classmethod
    def _normalize_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s]+/?", origin):
                raise ValueError(f"must list origins like https://app.example.com (got {origin[:80]!r})")
        return tuple(origin.rstrip("/") for origin in value)


class Settings(WebSocketConfig):
    """What ``liveboard serve realtime`` reads (the common settings plus the WebSocket ones)."""
