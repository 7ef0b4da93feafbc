"""Concurrent writers in several processes never fork the chain.

On PostgreSQL, four processes append at once; the head row's lock serialises them, so the
result is one chain with consecutive sequence numbers. On SQLite the portal's IMMEDIATE
transactions serialise writers for the whole database, so there is nothing to race: this
test runs on PostgreSQL only (``DATABASE_URL=postgres://...``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from portal.audit.models import Event
from tests.audit_helpers import run_verify

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises writers; PostgreSQL only"),
]

WRITER = """
import sys, django
django.setup()
from django.db import transaction
from portal.audit.trail import record
for index in range(int(sys.argv[1])):
    with transaction.atomic():
        record("test.concurrent", target=f"{sys.argv[2]}-{index}")
"""


def test_writers_in_four_processes_make_one_unbroken_chain() -> None:
    settings = connection.settings_dict
    url = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="portal.settings")
    root = Path(__file__).resolve().parent.parent
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, "50", f"w{n}"], cwd=root, env=env, stderr=subprocess.PIPE)
        for n in range(4)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    seqs = list(Event.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 201))
    assert Event.objects.values("prev_hash").distinct().count() == 200
    assert run_verify()[0] == 0
