"""Settings: typed values from the environment; a bad one is a single line naming the variable."""

from __future__ import annotations

import pytest

from libs.common.settings import CommonSettings, ConfigError, env, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        "LOG_LEVEL",
        "NATS_URL",
        "NATS_STREAM_REPLICAS",
        "LIVEBOARD_MIGRATE_ON_START",
        "SUPABASE_JWT_LEEWAY",
        "DATABASE_URL",
        "LIVEBOARD_SHUTDOWN_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_good_values(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("NATS_URL", "nats://10.0.0.1:4222,nats://10.0.0.2:4222")
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "3")
    monkeypatch.setenv("LIVEBOARD_MIGRATE_ON_START", "false")
    settings = load_settings(CommonSettings)
    assert settings.log_level == "debug"
    assert settings.nats_url.endswith("10.0.0.2:4222")
    assert settings.nats_stream_replicas == 3
    assert settings.migrate_on_start is False
    assert settings.supabase_jwt_audience == "authenticated"
    assert settings.jwt_leeway_seconds == 30


def test_code_overrides_win_over_environment(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "error")
    assert load_settings(CommonSettings, log_level="warning").log_level == "warning"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("LOG_LEVEL", "loud", "configuration error: LOG_LEVEL='loud' must be one of debug, info, warning"),
        ("NATS_STREAM_REPLICAS", "abc", "configuration error: NATS_STREAM_REPLICAS='abc' must be an integer"),
        ("NATS_STREAM_REPLICAS", "9", "configuration error: NATS_STREAM_REPLICAS='9' must be <= 5"),
        ("NATS_STREAM_REPLICAS", "0", "configuration error: NATS_STREAM_REPLICAS='0' must be >= 1"),
        ("LIVEBOARD_MIGRATE_ON_START", "maybe", "configuration error: LIVEBOARD_MIGRATE_ON_START='maybe' must be true"),
        (
            "LIVEBOARD_SHUTDOWN_TIMEOUT",
            "soon",
            "configuration error: LIVEBOARD_SHUTDOWN_TIMEOUT='soon' must be a number",
        ),
        ("SUPABASE_JWT_LEEWAY", "-1", "configuration error: SUPABASE_JWT_LEEWAY='-1' must be >= 0"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(CommonSettings)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(expected)
    assert caught.value.code == 2


def test_secret_values_are_not_echoed(monkeypatch):
    class WithSecret(CommonSettings):
        auth_scope_signing_key: int = env("AUTH_SCOPE_SIGNING_KEY", default=0)

    monkeypatch.setenv("AUTH_SCOPE_SIGNING_KEY", "hunter2")
    with pytest.raises(ConfigError) as caught:
        load_settings(WithSecret)
    assert str(caught.value) == "configuration error: AUTH_SCOPE_SIGNING_KEY must be an integer"


def test_serve_refuses_to_start_without_token_verification(monkeypatch):
    from libs.common.runner import require_identity_config

    monkeypatch.delenv("SUPABASE_JWT_SECRET", raising=False)
    monkeypatch.delenv("SUPABASE_JWKS_URL", raising=False)
    with pytest.raises(ConfigError, match="SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL"):
        require_identity_config(load_settings(CommonSettings))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8000,http://localhost:8000", ("http://127.0.0.1:8000", "http://localhost:8000")),
        ("https://app.example.com/", ("https://app.example.com",)),
        (' ["https://a.example.com", "https://b.example.com"] ', ("https://a.example.com", "https://b.example.com")),
        ("", ()),
    ],
)
def test_list_variables_take_the_documented_comma_form_and_json(monkeypatch, value, expected):
    from services.realtime.config import Settings

    monkeypatch.setenv("WEBSOCKET_ALLOWED_ORIGINS", value)
    assert load_settings(Settings).allowed_origins == expected


@pytest.mark.parametrize("value", ['["https://a.example.com"', "[1, 2]", "app.example.com"])
def test_a_bad_list_is_one_line_naming_the_variable(monkeypatch, value):
    from services.realtime.config import Settings

    monkeypatch.setenv("WEBSOCKET_ALLOWED_ORIGINS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(Settings)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("configuration error: WEBSOCKET_ALLOWED_ORIGINS=")
