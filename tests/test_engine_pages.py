"""Engine pages: only admins see them or start/stop engines; the pages show state, failures and plans."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inference.models import EngineConfig, EngineSample, EngineState

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def demo(db):
    config = EngineConfig.objects.create(
        name="demo",
        served_model_name="SmolLM2-135M-Instruct",
        model="/srv/models/SmolLM2-135M-Instruct",
        max_model_len=2048,
        cpu_kv_cache_gib=1,
    )
    EngineState.objects.create(
        engine=config,
        state=EngineState.State.LOADING,
        progress=0.45,
        message="model loading 45%",
        heartbeat_at=timezone.now(),
        supervisor_host="gpu-1",
        supervisor_pid=4242,
        base_url="unix:/srv/portal/run/demo.sock",
        failure_kind="port_in_use",
        diagnosis="The engine could not bind its socket /srv/portal/run/demo.sock, or a port vLLM picks is taken.",
        remedies=["If a file or folder is at /srv/portal/run/demo.sock, remove it. Then start the engine."],
        log_tail="INFO Starting to load model",
    )
    return config


ADMIN_URLS = ["/engines/", "/engines/status.json", "/engines/demo/", "/engines/demo/metrics.json"]


@pytest.mark.parametrize("url", ADMIN_URLS)
def test_members_and_auditors_cannot_see_engine_pages(client_for, alice, audrey, demo, url):
    assert client_for(alice).get(url).status_code == 403
    assert client_for(audrey).get(url).status_code == 403


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_members_and_auditors_cannot_start_or_stop_engines(client_for, alice, audrey, demo, action):
    for user in (alice, audrey):
        assert client_for(user).post(f"/engines/demo/{action}/").status_code == 403
    demo.refresh_from_db()
    assert demo.desired_state == "stopped"
    assert demo.restart_requested_at is None


def test_anonymous_visitors_are_sent_to_log_in(client, demo):
    response = client.get("/engines/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_adam_sees_the_engines_with_state_progress_and_last_failure(client_for, adam, demo):
    page = client_for(adam).get("/engines/").content.decode()
    assert 'data-engine="demo"' in page
    assert "state-loading" in page
    assert "model loading 45%" in page
    assert '<progress max="1" value="0.45"' in page
    assert "could not bind its socket" in page
    assert "No NVIDIA GPU on this host." in page
    assert '<script src="/static/inference/engines.js"' in page
    assert "<script>" not in page, "the CSP forbids inline scripts"


def test_the_engines_nav_entry_is_for_admins_only(client_for, adam, alice):
    assert 'data-nav="inference:engines"' in client_for(adam).get("/").content.decode()
    assert 'data-nav="inference:engines"' not in client_for(alice).get("/").content.decode()


def test_the_detail_page_shows_diagnosis_remedies_log_and_memory_plan(client_for, adam, demo):
    page = client_for(adam).get("/engines/demo/").content.decode()
    assert "If a file or folder is at /srv/portal/run/demo.sock, remove it." in page
    assert '<span data-field="url">unix:/srv/portal/run/demo.sock</span>' in page, "where the engine listens"
    assert "127.0.0.1" not in page
    assert "INFO Starting to load model" in page
    assert "No config.json was found" in page  # the path does not exist on this machine
    assert 'data-metrics-url="/engines/demo/metrics.json"' in page


def test_the_status_json_carries_what_the_page_refreshes(client_for, adam, demo):
    body = client_for(adam).get("/engines/status.json").json()
    (engine,) = body["engines"]
    assert engine["state"] == "loading"
    assert engine["progress"] == 0.45
    assert engine["failure"]["kind"] == "port_in_use"
    assert engine["supervisor"] == "gpu-1 pid 4242"
    assert engine["url"] == "unix:/srv/portal/run/demo.sock"
    assert "port" not in engine
    assert "api_key" not in engine
    assert body["hosts"][0]["memory_total"] > 0
    # The live panel is drawn by the page's own template: same host, same facts.
    page = client_for(adam).get("/engines/").content.decode()
    cards = body["host_cards_html"]
    name = f"<strong>{body['hosts'][0]['host']}</strong>"
    assert name in cards
    assert name in page
    assert "cores," in cards


def test_metrics_json_returns_the_last_hour_of_samples(client_for, adam, demo):
    now = timezone.now()
    EngineSample.objects.create(engine=demo, at=now - timedelta(hours=2), running=9)
    EngineSample.objects.create(engine=demo, at=now - timedelta(minutes=5), running=2, generation_tokens_per_s=31.5)
    samples = client_for(adam).get("/engines/demo/metrics.json").json()["samples"]
    assert [sample["running"] for sample in samples] == [2]
    assert samples[0]["generation_tps"] == 31.5


def test_adam_starts_stops_and_restarts_an_engine(client_for, adam, demo):
    client = client_for(adam)
    response = client.post("/engines/demo/start/", {"next": "/engines/demo/"})
    assert response.status_code == 302
    assert response["Location"] == "/engines/demo/"
    demo.refresh_from_db()
    assert demo.desired_state == "running"
    client.post("/engines/demo/stop/")
    demo.refresh_from_db()
    assert demo.desired_state == "stopped"
    client.post("/engines/demo/restart/")
    demo.refresh_from_db()
    assert demo.desired_state == "running"
    assert demo.restart_requested_at is not None


def test_an_action_never_redirects_off_site(client_for, adam, demo):
    response = client_for(adam).post("/engines/demo/stop/", {"next": "https://evil.example/"})
    assert response["Location"] == "/engines/"


def test_the_start_button_refuses_a_config_that_cannot_fit(client_for, adam, demo):
    demo.model = "openai/gpt-oss-20b"
    demo.max_model_len = 131072
    demo.save()
    response = client_for(adam).post("/engines/demo/start/", follow=True)
    assert "does not fit" in response.content.decode()
    demo.refresh_from_db()
    assert demo.desired_state == "stopped"


def test_the_admin_form_refuses_unsafe_flags(client_for, adam, demo):
    response = client_for(adam).post(
        f"/admin/inference/engineconfig/{demo.pk}/change/",
        {
            "name": "demo", "served_model_name": "x", "model": "/srv/m", "device": "cpu", "dtype": "auto",
            "gpu_memory_utilization": "0.9", "tensor_parallel_size": "1", "pipeline_parallel_size": "1",
            "max_num_seqs": "8", "kv_cache_dtype": "auto", "cpu_kv_cache_gib": "1", "scheduling_policy": "fcfs",
            "extra_flags": "--host 0.0.0.0", "desired_state": "stopped",
            "state-TOTAL_FORMS": "1", "state-INITIAL_FORMS": "1",
            "state-MIN_NUM_FORMS": "0", "state-MAX_NUM_FORMS": "1",
        },
    )  # fmt: skip
    assert response.status_code == 200
    assert "--host is not allowed" in response.content.decode()
