"""The ``liveboard`` console script (CONTRACT §1)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from libs.common.runner import SERVICES, add_serve_arguments, serve
from libs.common.settings import ConfigError


def _cmd_serve(args: argparse.Namespace) -> int:
    return serve(args.service, args)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .migrate import SCHEMAS, migrate_all

    url = os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError("configuration error: DATABASE_URL must be set for migrate")
    services = (args.service,) if args.service else SCHEMAS
    for service, versions in migrate_all(url, services).items():
        print(f"{service}: {len(versions)} migration(s) applied" + (f" {versions}" if versions else ""))
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from .dev import run_dev

    ports = {
        "realtime": args.realtime_port,
        "auth": args.auth_port,
        "boards": args.boards_port,
        "audit": args.audit_port,
    }
    return run_dev(Path(args.state_dir), ports, args.nats_port, args.postgres_port)


def _dev_secret() -> tuple[str, str]:
    secret = os.environ.get("SUPABASE_JWT_SECRET")
    issuer = os.environ.get("SUPABASE_JWT_ISSUER")
    state = Path(os.environ.get("LIVEBOARD_HOME", ".liveboard")) / "secrets.json"
    if (not secret or not issuer) and state.exists():
        import json

        kept = json.loads(state.read_text())
        secret = secret or kept["jwt_secret"]
        issuer = issuer or kept["issuer"]
    if not secret:
        raise ConfigError(
            "configuration error: SUPABASE_JWT_SECRET is not set and no .liveboard/secrets.json "
            "exists (run 'liveboard dev' once)"
        )
    from .devtokens import DEV_ISSUER

    return secret, issuer or DEV_ISSUER


def _cmd_token(args: argparse.Namespace) -> int:
    from .devtokens import service_role_key, user_token

    secret, issuer = _dev_secret()
    if args.role == "service_role":
        print(service_role_key(secret, ttl=args.ttl))
    else:
        if not args.sub:
            raise ConfigError("liveboard token: --sub is required for a user token")
        print(user_token(secret, args.sub, args.email or f"{args.sub}@example.com", issuer=issuer, ttl=args.ttl))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run one service, as in Kubernetes")
    p.add_argument("service", choices=sorted(SERVICES))
    add_serve_arguments(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("service", nargs="?", choices=["auth", "boards", "audit"])
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser(
        "dev",
        help="embedded NATS + Postgres, migrations, demo data, all four services",
        description="Run the whole stack on this machine: nats-server (JetStream, per-service users) and "
        "PostgreSQL from their PyPI wheels, the migrations, the demo organization and board, and the four "
        "services. Ctrl-C stops the services, then the servers. NATS_URL / DATABASE_URL in the "
        "environment use those servers instead of embedded ones. With make: make dev ARGS='--realtime-port 9000'.",
    )
    p.add_argument(
        "--state-dir",
        default=os.environ.get("LIVEBOARD_HOME", ".liveboard"),
        help="data directories, generated secrets and service logs, kept between runs; one running stack "
        "per directory (default: $LIVEBOARD_HOME or .liveboard)",
    )
    for name, port in (("realtime", 8000), ("auth", 8001), ("boards", 8002), ("audit", 8003)):
        p.add_argument(f"--{name}-port", type=int, default=port, help=f"port of the {name} service (default {port})")
    p.add_argument("--nats-port", type=int, default=4222, help="port of the embedded nats-server (default 4222)")
    p.add_argument("--postgres-port", type=int, default=54322, help="port of the embedded PostgreSQL (default 54322)")
    p.set_defaults(func=_cmd_dev)

    p = sub.add_parser("token", help="mint a Supabase-format access token with the dev secret")
    p.add_argument("--sub")
    p.add_argument("--email")
    p.add_argument("--ttl", type=int, default=3600)
    p.add_argument("--role", choices=["authenticated", "service_role"], default="authenticated")
    p.set_defaults(func=_cmd_token)

    from .bench.cli import configure as configure_bench

    p = sub.add_parser("bench", help="load generator against any running deployment (table + JSON)")
    configure_bench(p)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"liveboard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
