"""The processes one benchmark run measures: the demo engine under its supervisor, and Daphne.

Built on the test stack's machinery (``tests/stack.py``): a temporary data dir, its own
database (a fresh PostgreSQL database when ``DATABASE_URL`` is set, else SQLite), Redis as
the channel layer and cache when ``REDIS_URL`` is set, ``migrate``, ``preparedemo`` and
``manage.py runengine``. The web process runs with production settings (``PORTAL_ENV=
production``, ``DEBUG`` off) as ``runportal`` starts it (``python -m portal.daphne_server``), only without
the HTTPS redirect, since the benchmark talks plain HTTP on loopback as a proxy would.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.stack import BASE_DIR, MODELS_DIR, Stack, StackDatabase, wait_until

MEMBER = "benchuser"


@dataclass
class Credentials:
    """How each client authenticates: the session cookie (chat socket) and an API key (``/v1``)."""

    cookie: str
    api_key: str


def production_env(env: dict[str, str]) -> dict[str, str]:
    """Return ``env`` with the web process's production settings (plain HTTP on loopback)."""
    env = dict(env)
    env.update(
        {
            "PORTAL_ENV": "production",
            "PORTAL_DEBUG": "false",
            "PORTAL_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PORTAL_SSL_REDIRECT": "false",
            "PORTAL_HSTS_SECONDS": "0",
            "PORTAL_SECRET_KEY": secrets.token_urlsafe(48),
            "PORTAL_LOG_LEVEL": "WARNING",
            # One benchmark user asks for what many users would: at the per-user HTTP limit
            # (300 a minute) the relay ceiling's /v1 blocks got 429s. The limit stays on (its
            # cache round trips are part of each request's cost), only far higher.
            "PORTAL_HTTP_RATE_LIMIT": "1000000/m",
        }
    )
    return env


def build(tmp_root: Path, *, max_num_seqs: int, engine: bool = True) -> Stack:
    """Create the data dir, database and (with ``engine``) the demo engine config; start nothing."""
    data_dir = tmp_root / "data"
    data_dir.mkdir(parents=True)
    database = StackDatabase.create(data_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "PORTAL_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_DATA_DIR": str(data_dir),
            "PORTAL_ENGINE_VENV": os.environ.get("PORTAL_ENGINE_VENV", str(BASE_DIR / ".venv-engine")),
            "PORTAL_ENGINE_TICK_SECONDS": "0.5",
            "PORTAL_REDIS_PREFIX": f"bench-{secrets.token_hex(3)}",
        }
    )
    if database.url:
        env["DATABASE_URL"] = database.url
    env = production_env(env)
    stack = Stack(data_dir=data_dir, env=env, database=database, engine_name=f"bench{secrets.token_hex(3)}")
    stack.manage("migrate", "--noinput", "-v0")
    if engine:
        stack.manage(
            "preparedemo",
            "--models-dir", str(MODELS_DIR), "--name", stack.engine_name,
            "--max-model-len", "2048", "--max-num-seqs", str(max_num_seqs), "--cpu-kv-cache-gib", "1",
            timeout=900,
        )  # fmt: skip
    return stack


def credentials(stack: Stack) -> Credentials:
    """Create the benchmark's member; return a session cookie and a fresh API key for them."""
    script = (
        "import json; from django.conf import settings; from django.contrib.auth import get_user_model; "
        "from django.test import Client; from accounts.roles import assign_role, MEMBERS; "
        f"u, _ = get_user_model().objects.get_or_create(username={MEMBER!r}, "
        f"defaults={{'email': '{MEMBER}@example.com'}}); assign_role(u, MEMBERS); "
        "c = Client(); c.force_login(u); "
        "name = settings.SESSION_COOKIE_NAME; "
        "print(json.dumps({'cookie': f'{name}={c.cookies[name].value}'}))"
    )
    cookie = json.loads(stack.manage("shell", "-c", script).stdout.strip().splitlines()[-1])["cookie"]
    key = stack.manage("apikey", "create", MEMBER, "--name", f"bench {secrets.token_hex(2)}").stdout.strip()
    return Credentials(cookie=cookie, api_key=key.splitlines()[-1])


def register_stub(stack: Stack, url: str) -> None:
    """Register the stub upstream at ``url`` as a ready engine (no supervisor watches it)."""
    stack.manage(
        "shell", "-c",
        "from datetime import timedelta; from django.utils import timezone; "
        "from inference.models import EngineConfig, EngineState; from bench import stub_upstream as s; "
        f"c = EngineConfig.objects.create(name='stubupstream', served_model_name=s.MODEL, model='/models/stub', "
        "desired_state=EngineConfig.Desired.RUNNING); "
        f"EngineState.objects.create(engine=c, state=EngineState.State.READY, base_url={url!r}, api_key=s.API_KEY, "
        "heartbeat_at=timezone.now() + timedelta(days=1))",
    )  # fmt: skip


def start_web(stack: Stack) -> tuple[str, subprocess.Popen[bytes]]:
    """Start one Daphne web process as ``runportal`` does; return its URL and process."""
    return stack.start_web()


def start_process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[str, subprocess.Popen[str]]:
    """Start a helper process that prints its URL on its first line; return (URL, process)."""
    process = subprocess.Popen(argv, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True, env=env)
    assert process.stdout is not None
    line = wait_until(process.stdout.readline, 30, f"{argv[-1]} to start")
    return line.strip(), process
