"""Typed configuration, read once from the environment at start-up.

Every service builds its settings object in its entry point and passes it down; nothing deeper
reads ``os.environ``. A bad value stops start-up with one line that names the variable and what
is allowed, because an operator staring at a crash-looping pod needs exactly that line.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from .forwarded import Network, parse_networks

LogLevel = Literal["debug", "info", "warning", "error", "critical"]

#: Field names whose values must never be echoed back in an error message or a log line.
SECRET_FIELDS = frozenset({"supabase_jwt_secret", "database_url", "auth_scope_signing_key", "nats_password"})


class ConfigError(SystemExit):
    """A configuration problem; its text is the one line printed before exiting with status 2."""

    def __init__(self, line: str) -> None:
        super().__init__(2)
        self.line = line

    def __str__(self) -> str:
        return self.line


def _list_of_strings(value: Any) -> Any:
    """A list variable as operators write it: ``a,b,c`` (the documented form) or a JSON array.

    pydantic-settings would JSON-decode a list-typed variable before any validator runs, so the
    documented comma form crashed start-up; ``NoDecode`` hands us the raw string instead.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValueError("must be a comma-separated list or a JSON array of strings") from None
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise ValueError("must be a comma-separated list or a JSON array of strings")
        items = parsed
    else:
        items = text.split(",")
    return tuple(item.strip() for item in items if item.strip())


#: A list-valued setting: ``A,B`` or ``["A", "B"]`` in the environment, a list or tuple in code.
StrList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_list_of_strings)]


def env(*names: str, **kwargs: Any) -> Any:
    """A field read from the first of ``names`` present in the environment (seed names first)."""
    return Field(validation_alias=AliasChoices(*names), **kwargs)


class CommonSettings(BaseSettings):
    """What every service needs. Service settings subclass this and add their own fields."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", populate_by_name=True, frozen=True)

    service_name: str = env("LIVEBOARD_SERVICE", default="liveboard")
    log_level: LogLevel = env("LOG_LEVEL", default="info")
    nats_url: str = env("NATS_URL", default="nats://127.0.0.1:4222")
    nats_stream_replicas: int = env("NATS_STREAM_REPLICAS", default=1, ge=1, le=5)
    #: This service's NATS credentials (one of: user + password, an nkey seed file, a creds file)
    #: and TLS files; ``libs.common.nats_permissions`` says what each service's user may do.
    nats_user: str | None = env("NATS_USER", default=None)
    nats_password: str | None = env("NATS_PASSWORD", default=None)
    nats_nkey_seed_file: str | None = env("NATS_NKEY_SEED_FILE", default=None)
    nats_creds_file: str | None = env("NATS_CREDS_FILE", default=None)
    nats_tls_ca_file: str | None = env("NATS_TLS_CA_FILE", default=None)
    nats_tls_cert_file: str | None = env("NATS_TLS_CERT_FILE", default=None)
    nats_tls_key_file: str | None = env("NATS_TLS_KEY_FILE", default=None)
    database_url: str | None = env("DATABASE_URL", default=None)
    migrate_on_start: bool = env("LIVEBOARD_MIGRATE_ON_START", default=True)
    supabase_jwt_secret: str | None = env("SUPABASE_JWT_SECRET", default=None)
    supabase_jwks_url: str | None = env("SUPABASE_JWKS_URL", default=None)
    supabase_jwt_issuer: str | None = env("SUPABASE_JWT_ISSUER", default=None)
    supabase_jwt_audience: str = env("SUPABASE_JWT_AUDIENCE", default="authenticated")
    jwt_leeway_seconds: int = env("SUPABASE_JWT_LEEWAY", default=30, ge=0, le=300)
    auth_service_url: str = env("AUTH_SERVICE_URL", default="http://127.0.0.1:8001")
    boards_service_url: str = env("BOARDS_SERVICE_URL", default="http://127.0.0.1:8002")
    #: Where auth publishes the scope-token keys; default ``{AUTH_SERVICE_URL}/.well-known/jwks.json``.
    auth_jwks_url: str | None = env("AUTH_JWKS_URL", default=None)
    otel_service_name: str | None = env("OTEL_SERVICE_NAME", default=None)
    otel_exporter_otlp_endpoint: str | None = env("OTEL_EXPORTER_OTLP_ENDPOINT", default=None)
    trace_file: str | None = env("LIVEBOARD_TRACE_FILE", default=None)
    shutdown_timeout: float = env("LIVEBOARD_SHUTDOWN_TIMEOUT", default=10.0, gt=0)
    event_loop: Literal["uvloop", "asyncio"] = env("LIVEBOARD_EVENT_LOOP", default="uvloop")
    #: Proxies (addresses or CIDRs) whose X-Forwarded-For / Forwarded name the client; empty:
    #: nobody's, the TCP peer is the client (libs/common/forwarded.py).
    trusted_proxies: StrList = env("TRUSTED_PROXIES", default=())

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(value)  # raises ValueError naming the bad entry
        return value

    @property
    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def scope_jwks_url(self) -> str:
        return self.auth_jwks_url or f"{self.auth_service_url.rstrip('/')}/.well-known/jwks.json"

    @property
    def tracer_service_name(self) -> str:
        return self.otel_service_name or self.service_name


S = TypeVar("S", bound=BaseSettings)


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable an operator sets for ``field`` (the upper-case alias)."""
    info = model.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        for choice in alias.choices:
            if isinstance(choice, str) and choice.isupper():
                return choice
    return field.upper()


def _allowed(error: dict[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "literal_error":
        return "must be one of " + str(ctx.get("expected", "")).replace("'", "")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be an integer"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    for bound, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx:
            return f"must be {word} {ctx[bound]}"
    return error.get("msg", "is not valid").removeprefix("Value error, ")


def load_settings(model: type[S], **overrides: Any) -> S:
    """Build ``model`` from the environment plus ``overrides``; raise ``ConfigError`` on bad input."""
    try:
        return model(**overrides)
    except SettingsError as exc:  # a value the settings source itself could not read
        match = re.search(r'field "([a-z_]+)"', str(exc))
        var = env_name(model, match.group(1)) if match else "a setting"
        raise ConfigError(f"configuration error: {var} cannot be parsed") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [part for part in error["loc"] if isinstance(part, str)]
        field = next((name for name in loc if name in model.model_fields), None)
        if field is None:
            field = next(
                (
                    name
                    for name, info in model.model_fields.items()
                    if isinstance(info.validation_alias, AliasChoices)
                    and any(str(c).lower() in (p.lower() for p in loc) for c in info.validation_alias.choices)
                ),
                loc[0] if loc else "?",
            )
        var = env_name(model, field)
        shown = "" if field in SECRET_FIELDS else f"={error.get('input')!r}"
        raise ConfigError(f"configuration error: {var}{shown} {_allowed(error)}") from None
