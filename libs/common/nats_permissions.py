"""Who may publish and subscribe to what on NATS: one table, rendered into nats-server's config.

Anything that reaches NATS without credentials could otherwise publish board events or
membership changes. Each service connects as its own user (``NATS_USER``/``NATS_PASSWORD``, or an
nkey / creds file) and may use only the subjects below: its own requests and replies, the streams
it writes, the JetStream API calls it makes on those streams, and a private inbox prefix
(``_INBOX_<service>``), so no service can read another's replies. ``allow_responses`` lets a
responder answer requests without a publish grant on every requester's inbox.

The same table renders the ``authorization`` block for the embedded dev/test server
(``devstack.NatsServer``) and for Kubernetes (``deploy/k8s/base/nats/permissions.conf``, with
passwords from the environment); a test checks the committed file is the rendering of this table.
Names of subjects come from ``subjects``; this module only says who may use them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .subjects import (
    AUTH_DIRECTORY,
    AUTH_EXCHANGE,
    BOARD_EVENTS_STREAM,
    BOARD_EVENTS_WILDCARD,
    SECURITY_STREAM,
)

SERVICES = ("auth", "boards", "realtime", "audit")
#: A user with every permission, for operators' tools, `liveboard dev`'s debugging and tests.
ADMIN_USER = "admin"
PRESENCE_STREAM = "KV_presence"  # the stream behind realtime's presence KV bucket
MEMBERSHIP_CHANGED = "auth.membership.changed.>"


def inbox_prefix(service: str) -> str:
    """The service's private reply-subject prefix (``connect(inbox_prefix=...)``)."""
    return f"_INBOX_{service}"


def _stream_admin(stream: str) -> list[str]:
    """Declare a stream idempotently (create, or update to the one configuration) and read its info."""
    return [f"$JS.API.STREAM.{verb}.{stream}" for verb in ("CREATE", "UPDATE", "INFO")]


def _pull_consumer(stream: str) -> list[str]:
    """Create/bind a durable pull consumer, fetch, read lag, ack/nak/term."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
    ]


def _kv_watch(stream: str) -> list[str]:
    """Watch a KV bucket (ordered push consumer: create, recreate, delete, flow control) and read it."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.FC.{stream}.>",
    ]


@dataclass(frozen=True)
class Grant:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responds: bool = False


def _grant(service: str, publish: list[str], subscribe: list[str], *, responds: bool = False) -> Grant:
    common_publish = ["$JS.API.INFO", *_stream_admin(SECURITY_STREAM), f"security.{service}.>"]
    common_subscribe = [f"{inbox_prefix(service)}.>"]
    return Grant(tuple(common_publish + publish), tuple(common_subscribe + subscribe), responds)


GRANTS: dict[str, Grant] = {
    "auth": _grant(
        "auth",
        publish=[MEMBERSHIP_CHANGED],
        subscribe=[AUTH_EXCHANGE, AUTH_DIRECTORY],
        responds=True,
    ),
    "boards": _grant(
        "boards",
        publish=[BOARD_EVENTS_WILDCARD, *_stream_admin(BOARD_EVENTS_STREAM), AUTH_EXCHANGE, AUTH_DIRECTORY],
        subscribe=["boards.v1.>", MEMBERSHIP_CHANGED],
        responds=True,
    ),
    "realtime": _grant(
        "realtime",
        publish=[
            "boards.v1.>",
            AUTH_EXCHANGE,
            "connections.>",
            "socketio.>",
            "$KV.presence.>",
            *_stream_admin(PRESENCE_STREAM),
            *_kv_watch(PRESENCE_STREAM),
        ],
        subscribe=[BOARD_EVENTS_WILDCARD, MEMBERSHIP_CHANGED, "socketio.>"],
    ),
    "audit": _grant(
        "audit",
        publish=[
            AUTH_EXCHANGE,
            *_stream_admin(BOARD_EVENTS_STREAM),
            *_pull_consumer(BOARD_EVENTS_STREAM),
            *_pull_consumer(SECURITY_STREAM),
        ],
        subscribe=[MEMBERSHIP_CHANGED],
    ),
}


def _quoted(subjects: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{subject}"' for subject in subjects) + "]"


def authorization_block(passwords: dict[str, str], *, admin: bool = True) -> str:
    """nats-server's ``authorization { users = [...] }`` for ``passwords`` (user -> password, or a
    ``$VARIABLE`` the server reads from its environment). ``admin`` adds the all-permissions user."""
    lines = ["authorization {", "  users = ["]
    for service in SERVICES:
        grant = GRANTS[service]
        lines += [
            f'    {{user: "{service}", password: {_value(passwords[service])}, permissions: {{',
            f"      publish: {_quoted(grant.publish)}",
            f"      subscribe: {_quoted(grant.subscribe)}",
        ]
        if grant.responds:
            lines.append("      allow_responses: true")
        lines.append("    }}")
    if admin:
        lines.append(f'    {{user: "{ADMIN_USER}", password: {_value(passwords[ADMIN_USER])}}}')
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _value(password: str) -> str:
    return password if password.startswith("$") else f'"{password}"'


K8S_HEADER = """\
# GENERATED from libs/common/nats_permissions.py (tests/deploy/test_nats_permissions.py checks it):
# each service's NATS user and the only subjects it may publish and subscribe to. Passwords come
# from the nats-server's environment (Secret liveboard-nats); each service gets its own as
# NATS_PASSWORD. Regenerate with: python -m libs.common.nats_permissions > deploy/k8s/base/nats/permissions.conf
"""


def kubernetes_config() -> str:
    """``deploy/k8s/base/nats/permissions.conf``: the table, passwords from the server's environment."""
    return K8S_HEADER + authorization_block({s: f"${s.upper()}_NATS_PASSWORD" for s in SERVICES}, admin=False)


if __name__ == "__main__":
    print(kubernetes_config(), end="")
