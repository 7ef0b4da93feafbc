"""Settings come from the environment through strict parsers."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import override_settings

from portal import env

ROOT = Path(__file__).resolve().parent.parent


def clean_environ(tmp_path: Path, **environ: str) -> dict[str, str]:
    """The test process's environment without any portal setting, plus ``environ``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
    clean.update({"PORTAL_DATA_DIR": str(tmp_path / "data"), **environ})
    return clean


def run_manage(*args: str, tmp_path: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_environ(tmp_path, **environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_under(tmp_path: Path, **environ: str) -> dict[str, Any]:
    """Return the settings a fresh process builds from ``environ`` (importing them connects to nothing)."""
    code = (
        "import json; from portal import settings as s; "
        "print(json.dumps({k: getattr(s, k) for k in dir(s) if k.isupper()}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_environ(tmp_path, **environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORTAL_PORT", "eighty"), ("PORTAL_DEBUG", "maybe"), ("PORTAL_ENV", "staging"), ("DATABASE_URL", "mysql://x")],
)
def test_a_bad_environment_value_stops_start_up_naming_the_variable(tmp_path, name, value):
    result = run_manage("check", tmp_path=tmp_path, **{name: value})
    assert result.returncode != 0
    assert name in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_env_bool_accepts_only_clear_words(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert env.env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "off")
    assert env.env_bool("X_FLAG", True) is False
    monkeypatch.setenv("X_FLAG", "sure")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env.env_bool("X_FLAG", False)


def test_env_int_enforces_bounds(monkeypatch):
    monkeypatch.setenv("X_PORT", "70000")
    with pytest.raises(ImproperlyConfigured, match="X_PORT=70000 is above"):
        env.env_int("X_PORT", 1, maximum=65535)


def test_env_float_refuses_nan(monkeypatch):
    monkeypatch.setenv("X_RATIO", "nan")
    with pytest.raises(ImproperlyConfigured, match="X_RATIO"):
        env.env_float("X_RATIO", 0.5)


def test_a_secret_can_come_from_a_file(monkeypatch, tmp_path):
    secret_file = tmp_path / "key"
    secret_file.write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret_file))
    assert env.env_secret("X_SECRET") == "s3cret"
    monkeypatch.setenv("X_SECRET", "other")
    with pytest.raises(ImproperlyConfigured, match="only one of X_SECRET and X_SECRET_FILE"):
        env.env_secret("X_SECRET")


def test_an_unreadable_secret_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE"):
        env.env_secret("X_SECRET")


def test_the_secret_key_is_generated_once_with_mode_0600(tmp_path):
    assert run_manage("check", tmp_path=tmp_path).returncode == 0
    key_file = tmp_path / "data" / "secret_key"
    first = key_file.read_text()
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert run_manage("check", tmp_path=tmp_path).returncode == 0
    assert key_file.read_text() == first


def generate_together(key_file: Path, starters: int) -> set[str]:
    barrier = threading.Barrier(starters)

    def start(_: int) -> str:
        barrier.wait()
        return env.generated_secret(key_file)

    with ThreadPoolExecutor(max_workers=starters) as pool:
        return set(pool.map(start, range(starters)))


def test_processes_starting_together_generate_one_secret_key(tmp_path):
    # Each round: several starters race on an empty directory; all must read the same full key.
    for round_number in range(20):
        key_file = tmp_path / str(round_number) / "secret_key"
        key_file.parent.mkdir()
        keys = generate_together(key_file, starters=4)
        assert len(keys) == 1
        assert len(keys.pop()) >= 50
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert os.listdir(key_file.parent) == ["secret_key"], "no temporary file left behind"


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        tmp_path=tmp_path,
        PORTAL_ENV="production",
        PORTAL_ALLOWED_HOSTS="portal.example.com",
        # Production needs a shared cache and a mail server (the check connects to neither).
        REDIS_URL="redis://127.0.0.1:6379/0",
        PORTAL_EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_without_a_mail_backend_fails_the_deploy_check_unless_the_console_is_chosen(tmp_path):
    production = {"PORTAL_ENV": "production", "PORTAL_ALLOWED_HOSTS": "portal.example.com"}
    result = run_manage("check", "--deploy", tmp_path=tmp_path, **production)
    assert result.returncode != 0
    assert "accounts.E002" in result.stderr
    assert "password-reset links" in result.stderr
    assert "PORTAL_EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend" in result.stderr
    on_purpose = run_manage(
        "check", "--deploy", tmp_path=tmp_path, PORTAL_EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend",
        **production,
    )  # fmt: skip
    assert "accounts.E002" not in on_purpose.stderr


def test_admins_need_mfa_by_default_in_production_only(tmp_path):
    production = settings_under(tmp_path, PORTAL_ENV="production", PORTAL_ALLOWED_HOSTS="portal.example.com")
    assert production["PORTAL_ADMIN_MFA_REQUIRED"] is True
    assert settings_under(tmp_path)["PORTAL_ADMIN_MFA_REQUIRED"] is False
    turned_off = settings_under(
        tmp_path, PORTAL_ENV="production", PORTAL_ALLOWED_HOSTS="portal.example.com", PORTAL_ADMIN_MFA_REQUIRED="false"
    )
    assert turned_off["PORTAL_ADMIN_MFA_REQUIRED"] is False


def test_production_with_several_web_processes_and_a_cache_that_is_not_shared_fails_the_check(tmp_path):
    production = {"PORTAL_ENV": "production", "PORTAL_ALLOWED_HOSTS": "portal.example.com"}
    result = run_manage("check", tmp_path=tmp_path, PORTAL_WEB_PROCESSES="3", **production)
    assert result.returncode != 0
    assert "accounts.E001" in result.stderr
    assert "REDIS_URL" in result.stderr
    # One web process shares its in-memory cache with itself.
    single = run_manage("check", tmp_path=tmp_path, **production)
    assert single.returncode == 0, single.stderr


def test_a_malformed_http_rate_limit_is_refused_at_start(tmp_path):
    result = run_manage("check", tmp_path=tmp_path, PORTAL_HTTP_RATE_LIMIT="many")
    assert result.returncode != 0
    assert "PORTAL_HTTP_RATE_LIMIT='many' is not a rate" in result.stderr


def test_production_without_allowed_hosts_is_refused(tmp_path):
    result = run_manage("check", tmp_path=tmp_path, PORTAL_ENV="production")
    assert result.returncode != 0
    assert "PORTAL_ALLOWED_HOSTS" in result.stderr


@pytest.mark.parametrize("hosts", ["", " , "])
def test_empty_allowed_hosts_count_as_unset(tmp_path, hosts):
    assert settings_under(tmp_path, PORTAL_ALLOWED_HOSTS=hosts)["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "[::1]"]
    result = run_manage("check", tmp_path=tmp_path, PORTAL_ENV="production", PORTAL_ALLOWED_HOSTS=hosts)
    assert result.returncode != 0
    assert "PORTAL_ALLOWED_HOSTS must name the public host name(s)" in result.stderr


def test_debug_in_production_is_refused(tmp_path):
    result = run_manage(
        "check", tmp_path=tmp_path, PORTAL_ENV="production", PORTAL_ALLOWED_HOSTS="portal.example.com", PORTAL_DEBUG="1"
    )
    assert result.returncode != 0
    assert "PORTAL_DEBUG=true is refused with PORTAL_ENV=production" in result.stderr


def test_a_content_security_policy_is_sent(client):
    response = client.get("/healthz")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_the_defaults_need_nothing_installed(tmp_path):
    found = settings_under(tmp_path)
    assert found["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert found["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert found["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_a_postgres_url_selects_postgresql_with_a_connect_timeout(tmp_path):
    database = settings_under(tmp_path, DATABASE_URL="postgres://portal:pw@db.internal:5432/portal")["DATABASES"]
    assert database["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert database["default"]["HOST"] == "db.internal"
    assert database["default"]["OPTIONS"]["connect_timeout"] == 5
    overridden = settings_under(tmp_path, DATABASE_URL="postgres://portal@db.internal/portal?connect_timeout=9")
    assert overridden["DATABASES"]["default"]["OPTIONS"]["connect_timeout"] == 9


def test_production_on_postgresql_pools_connections_and_the_pool_can_be_sized_or_turned_off(tmp_path):
    url = "postgres://portal:pw@db.internal:5432/portal"
    production = {"PORTAL_ENV": "production", "PORTAL_ALLOWED_HOSTS": "portal.example.com", "DATABASE_URL": url}
    pooled = settings_under(tmp_path, **production)["DATABASES"]["default"]["OPTIONS"]
    assert pooled["pool"] == {"min_size": 1, "max_size": 20, "timeout": 30}
    sized = settings_under(tmp_path, **production, PORTAL_DB_POOL_SIZE="5")["DATABASES"]["default"]["OPTIONS"]
    assert sized["pool"]["max_size"] == 5
    assert (
        "pool" not in settings_under(tmp_path, **production, PORTAL_DB_POOL_SIZE="0")["DATABASES"]["default"]["OPTIONS"]
    )
    # Development keeps one connection per thread (no pool to run dry under the test runner).
    assert "pool" not in settings_under(tmp_path, DATABASE_URL=url)["DATABASES"]["default"]["OPTIONS"]


def test_a_redis_url_selects_channels_redis_and_a_redis_cache_on_the_next_database(tmp_path):
    found = settings_under(tmp_path, REDIS_URL="redis://redis.internal:6379/2")
    layer = found["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert layer["CONFIG"]["hosts"] == ["redis://redis.internal:6379/2"]
    cache = found["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://redis.internal:6379/3", "cache.clear() must not flush the channel layer"
    assert cache["OPTIONS"] == {"socket_connect_timeout": 2, "socket_timeout": 5}
    assert "OPTIONS" not in layer["CONFIG"], "channels-redis blocks on reads: no read timeout"


@pytest.mark.parametrize(
    ("redis_url", "cache_url"),
    [
        ("redis://redis.internal", "redis://redis.internal/1"),
        ("unix:///run/redis.sock?db=4", "unix:///run/redis.sock?db=5"),
    ],
)
def test_the_cache_database_follows_the_channel_layers(tmp_path, redis_url, cache_url):
    assert settings_under(tmp_path, REDIS_URL=redis_url)["CACHES"]["default"]["LOCATION"] == cache_url


def test_portal_cache_url_puts_the_cache_elsewhere(tmp_path):
    found = settings_under(tmp_path, REDIS_URL="redis://redis.internal/0", PORTAL_CACHE_URL="redis://cache.internal/0")
    assert found["CACHES"]["default"]["LOCATION"] == "redis://cache.internal/0"


def test_the_smtp_password_can_come_from_a_file(tmp_path):
    password_file = tmp_path / "smtp"
    password_file.write_text("mail-s3cret\n")
    found = settings_under(
        tmp_path,
        PORTAL_EMAIL_HOST_USER="portal",
        PORTAL_EMAIL_HOST_PASSWORD_FILE=str(password_file),
        PORTAL_EMAIL_USE_TLS="true",
    )
    assert (found["EMAIL_HOST_USER"], found["EMAIL_HOST_PASSWORD"]) == ("portal", "mail-s3cret")
    assert (found["EMAIL_USE_TLS"], found["EMAIL_USE_SSL"]) == (True, False)


def test_starttls_and_implicit_tls_together_are_refused(tmp_path):
    result = run_manage("check", tmp_path=tmp_path, PORTAL_EMAIL_USE_TLS="true", PORTAL_EMAIL_USE_SSL="yes")
    assert result.returncode != 0
    assert "PORTAL_EMAIL_USE_TLS and PORTAL_EMAIL_USE_SSL are both true" in result.stderr


class ExitedAtOnce:
    """Stands in for a child process of runportal that has already exited."""

    started: ClassVar[list[list[str]]] = []

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        self.started.append(argv)

    def poll(self) -> int:
        return 0

    def wait(self, timeout: float | None = None) -> int:
        return 0


def runportal_argv(monkeypatch, **overrides: Any) -> dict[str, list[str]]:
    from portal.management.commands import runportal

    ExitedAtOnce.started = []
    monkeypatch.setattr(subprocess, "Popen", ExitedAtOnce)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(runportal, "port_is_free", lambda host, port: True)
    with override_settings(**overrides), pytest.raises(CommandError):
        call_command("runportal", stdout=io.StringIO())
    web, engine = ExitedAtOnce.started
    return {"web": web, "engine": engine}


def test_runportal_trusts_no_proxy_headers_by_default(monkeypatch):
    argv = runportal_argv(monkeypatch)
    assert "--proxy-headers" not in argv["web"], "a directly exposed Daphne must not believe X-Forwarded-For"
    assert argv["engine"][1:] == [str(ROOT / "manage.py"), "runengine"]


def test_runportal_trusts_proxy_headers_behind_a_proxy(monkeypatch):
    assert "--proxy-headers" in runportal_argv(monkeypatch, PORTAL_BEHIND_PROXY=True)["web"]


def test_sqlite_transactions_wait_for_each_other_instead_of_failing(tmp_path, django_db_blocker):
    """A chat turn reads, then writes; a supervisor heartbeat committed meanwhile must not fail it."""
    from django.db import DatabaseError, connection, connections, transaction

    if connection.vendor != "sqlite":
        pytest.skip("SQLite locking only: PostgreSQL waits for row locks by itself")
    connections.settings["locks"] = {**connection.settings_dict, "NAME": str(tmp_path / "locks.sqlite3")}
    errors: list[Exception] = []

    def heartbeat() -> None:
        try:
            with transaction.atomic(using="locks"), connections["locks"].cursor() as cursor:
                cursor.execute("INSERT INTO events VALUES ('heartbeat')")
        except DatabaseError as exc:
            errors.append(exc)
        finally:
            connections["locks"].close()

    def turn() -> list[str]:
        try:
            with connections["locks"].cursor() as cursor:
                cursor.execute("CREATE TABLE events (name TEXT)")
            writer = threading.Thread(target=heartbeat)
            with transaction.atomic(using="locks"), connections["locks"].cursor() as cursor:
                cursor.execute("SELECT count(*) FROM events")
                writer.start()
                writer.join(timeout=1)  # commits at once unless this transaction holds the write lock
                cursor.execute("INSERT INTO events VALUES ('turn')")
            writer.join(timeout=30)
            with connections["locks"].cursor() as cursor:
                cursor.execute("SELECT name FROM events ORDER BY rowid")
                return [row[0] for row in cursor.fetchall()]
        finally:
            connections["locks"].close()

    # Own threads, like the web and supervisor processes: no event loop another test left running.
    try:
        with django_db_blocker.unblock(), ThreadPoolExecutor(1) as pool:
            names = pool.submit(turn).result()
    finally:
        del connections.settings["locks"]
    assert errors == []
    assert names == ["turn", "heartbeat"]


def test_a_wildcard_bind_answers_to_this_machines_name_and_addresses(tmp_path):
    import socket

    hosts = settings_under(tmp_path, PORTAL_HOST="0.0.0.0")["ALLOWED_HOSTS"]  # noqa: S104
    # runportal prints http://<hostname>:<port>/ for a wildcard bind: that URL must open.
    assert socket.gethostname() in hosts
    assert any(host[0].isdigit() and host != "127.0.0.1" for host in hosts), hosts
    assert settings_under(tmp_path)["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "[::1]"]
