"""External engines: registration, the supervisor's probe and its states, routing, pages and doctor.

The probe is exercised against real servers on loopback: a stub vLLM (tests/external_servers.py,
named as a stub: its model list and load are set by the test), Python's own http.server (a real
program that is not vLLM), a closed port, and a TLS server with a self-signed certificate. The
real vLLM as an external engine is in tests/test_external_engine_real.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.utils import timezone

from inference.engine_client import ChatRequest, stream_chat
from inference.engine_router import EngineUnavailable, pick_engine
from inference.engine_secrets import engine_api_key
from inference.external_engines import address_allowed
from inference.generation import Generation
from inference.models import EngineConfig, EngineState
from inference.status import model_choices
from inference.supervisor import Supervisor
from portal import doctor, env
from portal.audit.models import Event
from tests import chat_stub_engine
from tests.api_client import call, key_for, ledger_fixture  # noqa: F401 - fixture
from tests.chat_socket import loop_cleaned_up  # noqa: F401 - fixture
from tests.external_servers import API_KEY, OpenAIStub, plain_web_server, self_signed, tls_context
from tests.test_chat_generation import RecordingSink, prepared_for

State = EngineState.State


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "engine.key"
    path.write_text(API_KEY + "\n")
    return path


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    server = OpenAIStub(["team-model"])
    yield server
    server.close()


def add_external(name: str, url: str, *args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("engine", "add-external", name, "--url", url, *args, stdout=out)
    return out.getvalue()


def probed(name: str, wanted: str | None = None, timeout: float = 15.0) -> EngineState:
    """Run the real supervisor's loop (one tick at a time) until the engine's state is ``wanted``."""
    supervisor = Supervisor(only=name)
    deadline = time.monotonic() + timeout
    try:
        while True:
            supervisor.tick()
            state = EngineState.objects.filter(engine__name=name).first()
            # A probe of this supervisor finished and was written (not an older row).
            written = state is not None and state.pk in supervisor.external.due and not supervisor.external.running
            if state is not None and written and (wanted is None or state.state == wanted):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: still {state and state.state} ({state and state.message})")
            time.sleep(0.1)
    finally:
        supervisor.external.shutdown()


# --- settings and registration ------------------------------------------------------------


def test_the_allowed_addresses_are_host_names_domains_and_networks_only(monkeypatch):
    allowed = "10.0.0.0/8, *.gpu.internal,llm.example.com,fd00::/8,192.0.2.7"
    monkeypatch.setenv("PORTAL_EXTERNAL_ENGINE_ALLOWED", allowed)
    assert env.env_host_patterns("PORTAL_EXTERNAL_ENGINE_ALLOWED") == [
        "10.0.0.0/8", "*.gpu.internal", "llm.example.com", "fd00::/8", "192.0.2.7/32",
    ]  # fmt: skip
    for bad in ("10.0.0.1/8", "10.0.0.300", "http://llm.example.com", "*", "bad_name.example", "a..b", "fd00::/200"):
        monkeypatch.setenv("PORTAL_EXTERNAL_ENGINE_ALLOWED", bad)
        with pytest.raises(ImproperlyConfigured, match="PORTAL_EXTERNAL_ENGINE_ALLOWED"):
            env.env_host_patterns("PORTAL_EXTERNAL_ENGINE_ALLOWED")


def test_only_addresses_matching_the_allowed_patterns_pass():
    patterns = ["10.0.0.0/8", "*.gpu.internal", "llm.example.com"]
    assert address_allowed("http://10.1.2.3:8000", patterns)
    assert address_allowed("https://node7.gpu.internal", patterns)
    assert address_allowed("https://llm.example.com/v1", patterns)
    assert not address_allowed("http://192.168.1.5:8000", patterns)
    assert not address_allowed("https://gpu.internal.evil.com", patterns)
    assert not address_allowed("https://evilgpu.internal", patterns)
    assert address_allowed("https://node7.gpu.internal", ["*.gpu.internal"])  # names only, no networks
    assert not address_allowed("http://10.1.2.3", ["*.gpu.internal"])
    assert address_allowed("http://[fd00::5]:8000", ["fd00::/8"])
    assert address_allowed("http://anything:1", [])
    assert address_allowed("http://localhost:8000", ["127.0.0.0/8", "::1/128"])  # a name resolved into the networks


@pytest.mark.django_db
def test_add_external_stores_the_key_encrypted_and_remove_deletes_the_engine(stub, key_file):
    out = add_external("cluster", stub.url + "/v1/", "--api-key-file", str(key_file), "--model", "team-model")
    assert "registered at" in out
    assert "ready, serving team-model" in out
    config = EngineConfig.objects.get(name="cluster")
    assert (config.kind, config.url, config.pinned_models) == ("external", stub.url, ["team-model"])
    assert API_KEY not in config.api_key_encrypted
    assert engine_api_key(config) == API_KEY
    call_command("engine", "remove", "cluster")
    assert not EngineConfig.objects.filter(name="cluster").exists()


@pytest.mark.django_db
def test_a_key_kept_in_its_file_is_read_at_every_use(stub, key_file):
    add_external("cluster", stub.url, "--api-key-file", str(key_file), "--keep-key-in-file")
    config = EngineConfig.objects.get(name="cluster")
    assert config.api_key_encrypted == ""
    assert config.api_key_file == str(key_file)
    key_file.write_text("rotated-key")
    assert engine_api_key(config) == "rotated-key"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "extra", "error"),
    [
        ("ftp://example.com", [], "not an http:// or https:// URL"),
        ("http://user:pw@example.com", [], "without user, password"),
        ("http://example.com:99999", [], "is not a URL"),
        ("http://10.9.9.9:8000", [], "not allowed by PORTAL_EXTERNAL_ENGINE_ALLOWED"),
        ("http://127.0.0.1:9", ["--api-key-file", "/nonexistent/key"], "cannot be read"),
        ("http://127.0.0.1:9", ["--api-key-file", "EMPTY"], "The API key is empty"),
        ("http://127.0.0.1:9", ["--ca-bundle", "EMPTY"], "cannot be used"),
        ("http://127.0.0.1:9", ["--model=a b"], "is not a model name"),
        ("http://127.0.0.1:9", [], "demo is a managed engine"),
    ],
)
def test_add_external_refuses_bad_input_and_writes_nothing(settings, tmp_path, url, extra, error):
    settings.EXTERNAL_ENGINE_ALLOWED = ["127.0.0.0/8", "*.example.com"]
    EngineConfig.objects.create(name="demo", served_model_name="smol", model="/srv/smol")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    extra = [str(empty) if item == "EMPTY" else item for item in extra]
    name = "demo" if "managed" in error else "cluster"
    with pytest.raises(CommandError, match=error):
        add_external(name, url, *extra)
    assert list(EngineConfig.objects.values_list("name", flat=True)) == ["demo"]


@pytest.mark.django_db
def test_a_taken_name_needs_replace_and_a_running_managed_engine_is_not_removed(stub, key_file):
    add_external("cluster", stub.url)
    with pytest.raises(CommandError, match="--replace"):
        add_external("cluster", stub.url, "--api-key-file", str(key_file))
    add_external("cluster", stub.url, "--api-key-file", str(key_file), "--replace")
    assert engine_api_key(EngineConfig.objects.get(name="cluster")) == API_KEY
    EngineConfig.objects.create(name="demo", served_model_name="smol", model="/srv/smol",
                                desired_state="running")  # fmt: skip
    with pytest.raises(CommandError, match="engine stop demo"):
        call_command("engine", "remove", "demo")
    with pytest.raises(CommandError, match="No engine named"):
        call_command("engine", "remove", "nothing")


# --- the probe: each bad input is a state and a sentence ----------------------------------


@pytest.mark.django_db
def test_the_supervisor_probes_an_external_engine_to_ready_with_its_load(stub, key_file):
    stub.running = 3
    add_external("cluster", stub.url, "--api-key-file", str(key_file))
    state = probed("cluster", State.READY)
    assert state.message == "ready, serving team-model"
    assert (state.served_models, state.running_requests, state.base_url) == (["team-model"], 3, stub.url)
    assert state.supervisor_pid
    assert state.heartbeat_at
    assert {"/health", "/v1/models", "/metrics"} <= set(stub.seen_paths)


@pytest.mark.django_db
def test_an_unreachable_address_is_a_state_and_a_sentence():
    with plain_web_server(Path(".")) as url:
        pass  # now nothing listens on that port
    add_external("gone", url)
    state = probed("gone", State.UNREACHABLE)
    assert state.message == f"Unreachable: cannot connect to {url}: [Errno 111] Connection refused."
    assert "can reach" in state.remedies[0]


@pytest.mark.django_db
def test_a_wrong_key_reads_as_unauthorized(stub, tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key")
    add_external("cluster", stub.url, "--api-key-file", str(wrong))
    state = probed("cluster", State.UNAUTHORIZED)
    assert state.message == "The engine refused the portal's API key (HTTP 401 from /v1/models)."
    assert "--replace" in state.remedies[0]


@pytest.mark.django_db
def test_a_changed_secret_key_reads_as_unauthorized_with_the_reason(stub, key_file, settings):
    add_external("cluster", stub.url, "--api-key-file", str(key_file))
    settings.SECRET_KEY = "another-secret-key-" * 4
    state = probed("cluster", State.UNAUTHORIZED)
    assert "PORTAL_SECRET_KEY changed" in state.message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("files", "sentence"),
    [
        ({}, "Not an OpenAI-compatible server: GET /v1/models answered HTTP 404."),
        ({"v1/models": "<html>hello</html>"}, "did not answer a model list"),
    ],
)
def test_a_web_server_that_is_not_vllm_reads_as_incompatible(tmp_path, files, sentence):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with plain_web_server(tmp_path) as url:
        add_external("website", url)
        state = probed("website", State.INCOMPATIBLE)
    assert sentence in state.message
    assert "OpenAI-compatible server" in state.remedies[0]


@pytest.mark.django_db
def test_a_model_list_that_changes_is_followed_and_a_missing_pinned_model_degrades(stub, key_file):
    add_external("free", stub.url, "--api-key-file", str(key_file))
    add_external("pinned", stub.url, "--api-key-file", str(key_file), "--model", "team-model")
    stub.models = ["team-model", "coder"]
    assert probed("free", State.READY).served_models == ["team-model", "coder"]
    stub.models = ["coder"]
    state = probed("pinned", State.DEGRADED)
    assert state.message == "Degraded: pinned model team-model is no longer listed (/v1/models lists: coder)."
    assert probed("free", State.READY).served_models == ["coder"]
    assert pick_engine("coder").name == "free"
    with pytest.raises(EngineUnavailable) as caught:
        pick_engine("team-model")
    assert caught.value.state == "degraded"
    assert caught.value.message == "the engine no longer serves this model — please tell an admin"


@pytest.mark.django_db
def test_a_self_signed_certificate_is_a_tls_error_until_its_ca_bundle_is_given(tmp_path, key_file):
    cert, key = self_signed(tmp_path)
    server = OpenAIStub(["team-model"], tls=tls_context(cert, key))
    try:
        add_external("secure", server.url, "--api-key-file", str(key_file))
        state = probed("secure", State.TLS_ERROR)
        assert state.message.startswith(f"TLS error talking to {server.url}: ")
        assert "certificate" in state.message
        add_external("secure", server.url, "--api-key-file", str(key_file), "--ca-bundle", str(cert), "--replace")
        assert probed("secure", State.READY).message == "ready, serving team-model"
        target = pick_engine("team-model")
        assert (target.base_url, target.ca_bundle) == (server.url, str(cert))
    finally:
        server.close()


# --- routing ------------------------------------------------------------------------------


def external(name: str, url: str, state: str, *, models: list[str], load: int = 0) -> EngineConfig:
    from inference.engine_secrets import encrypt_api_key

    config = EngineConfig.objects.create(
        name=name, kind="external", url=url, model=url, api_key_encrypted=encrypt_api_key(f"key-{name}"),
        desired_state="running",
    )  # fmt: skip
    EngineState.objects.create(
        engine=config, state=state, served_models=models, running_requests=load, base_url=url,
        message="probe sentence", heartbeat_at=timezone.now(),
    )  # fmt: skip
    return config


def managed(name: str, model: str, state: str, *, load: int = 0) -> EngineConfig:
    config = EngineConfig.objects.create(
        name=name, served_model_name=model, model=f"/srv/{name}", desired_state="running"
    )
    EngineState.objects.create(
        engine=config, state=state, running_requests=load, base_url=f"unix:/run/portal-test/{name}.sock",
        api_key=f"key-{name}", heartbeat_at=timezone.now(),
    )  # fmt: skip
    return config


@pytest.mark.django_db
def test_a_model_served_by_managed_and_external_engines_goes_to_the_least_loaded_ready_one():
    managed("local", "smol", State.READY, load=4)
    external("remote", "https://gpu.example.com", State.READY, models=["smol", "oss"], load=1)
    external("dead", "https://gpu2.example.com", State.UNREACHABLE, models=["smol"])
    target = pick_engine("smol")
    assert (target.name, target.base_url, target.api_key, target.served_model) == (
        "remote", "https://gpu.example.com", "key-remote", "smol",
    )  # fmt: skip
    EngineState.objects.filter(engine__name="remote").update(running_requests=9)
    assert pick_engine("smol").name == "local"
    assert pick_engine("oss").name == "remote"
    choices = {choice["model"]: choice["engine"] for choice in model_choices()}
    assert choices == {"oss": "remote", "smol": "local"}


@pytest.mark.django_db
def test_equally_loaded_ready_engines_share_a_burst():
    managed("local", "smol", State.READY, load=2)
    external("remote", "https://gpu.example.com", State.READY, models=["smol"], load=2)
    managed("busy", "smol", State.READY, load=3)
    picked = {pick_engine("smol").name for _ in range(40)}
    assert picked == {"local", "remote"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state", "sentence"),
    [
        (State.UNREACHABLE, "the engine cannot be reached — please tell an admin"),
        (State.UNAUTHORIZED, "the engine refused the portal's key — please tell an admin"),
        (State.INCOMPATIBLE, "the engine is not an OpenAI-compatible server — please tell an admin"),
        (State.TLS_ERROR, "the engine's TLS certificate was not accepted — please tell an admin"),
    ],
)
def test_an_external_engine_that_cannot_be_used_is_never_picked_and_users_get_a_sentence(state, sentence):
    config = external("remote", "https://gpu.example.com", state, models=[])
    config.pinned_models = ["smol"]
    config.save()
    with pytest.raises(EngineUnavailable) as caught:
        pick_engine("smol")
    assert (caught.value.state, caught.value.message) == (state, sentence)


@pytest.mark.django_db
def test_an_external_engine_whose_supervisor_stopped_reporting_is_not_trusted():
    external("remote", "https://gpu.example.com", State.READY, models=["smol"])
    EngineState.objects.update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    with pytest.raises(EngineUnavailable) as caught:
        pick_engine("smol")
    assert caught.value.message == "engine supervisor is not running — please tell an admin"


@pytest.mark.django_db(transaction=True)
async def test_a_chat_reaches_an_external_engine_with_its_key(tmp_path):
    engine = chat_stub_engine.StubEngine()
    try:
        key = tmp_path / "key"
        key.write_text(chat_stub_engine.API_KEY)
        await sync_to_async(add_external)("remote", engine.url, "--api-key-file", str(key), "--model", "stub-model")
        await sync_to_async(EngineState.objects.update_or_create)(
            engine=await EngineConfig.objects.aget(name="remote"),
            defaults={"state": State.READY, "heartbeat_at": timezone.now(), "served_models": ["stub-model"]},
        )
        target = await sync_to_async(pick_engine)("stub-model")
        request = ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        text = "".join([delta.content async for delta in stream_chat(request, target)])
        assert text == "Hello world"
        assert engine.requests[0]["model"] == "stub-model"
    finally:
        engine.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_a_generation_on_an_external_engine_is_settled_and_audited_naming_it(alice, tmp_path):
    engine = chat_stub_engine.StubEngine()
    try:
        key = tmp_path / "key"
        key.write_text(chat_stub_engine.API_KEY)
        await sync_to_async(add_external)("remote", engine.url, "--api-key-file", str(key), "--model", "stub-model")
        await sync_to_async(EngineState.objects.update_or_create)(
            engine=await EngineConfig.objects.aget(name="remote"),
            defaults={"state": State.READY, "heartbeat_at": timezone.now() + timedelta(days=1)},
        )
        outcome = await Generation(await prepared_for(alice), RecordingSink()).run()
    finally:
        engine.close()
    assert (outcome.status, outcome.engine, outcome.content) == ("complete", "remote", "Hello world")
    event = await Event.objects.aget(action="generation")
    assert (event.engine, event.actor_name, event.completion_tokens) == ("remote", "alice", 2)
    config = await EngineConfig.objects.aget(name="remote")
    created = await Event.objects.aget(action="engine.config_created", target="remote")
    assert config.api_key_encrypted not in created.data  # not even the encrypted key enters the trail
    assert "set (sha256 " in created.data


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_the_v1_api_lists_and_answers_from_an_external_engine(alice, tmp_path, ledger):
    engine = chat_stub_engine.StubEngine()
    try:
        key = tmp_path / "key"
        key.write_text(chat_stub_engine.API_KEY)
        await sync_to_async(add_external)("remote", engine.url, "--api-key-file", str(key))
        await sync_to_async(EngineState.objects.update_or_create)(
            engine=await EngineConfig.objects.aget(name="remote"),
            defaults={"state": State.READY, "heartbeat_at": timezone.now() + timedelta(days=1),
                      "served_models": ["stub-model", "other-model"]},
        )  # fmt: skip
        api_key = await sync_to_async(key_for)(alice)
        listed = await call(method="GET", path="/v1/models", key=api_key)
        body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        answer = await call(body, key=api_key)
    finally:
        engine.close()
    assert listed.status == 200
    assert [model["id"] for model in listed.json()["data"]] == ["other-model", "stub-model"]
    assert answer.status == 200
    assert answer.json()["choices"][0]["message"]["content"] == "Hello world"
    assert ledger.settled[0][1].engine == "remote"


# --- pages and doctor ---------------------------------------------------------------------


@pytest.mark.django_db
def test_only_admins_can_register_an_external_engine_on_the_page(client_for, alice, audrey, adam, client, settings):
    settings.EXTERNAL_ENGINE_ALLOWED = ["*.example.com"]
    form = {"name": "remote", "url": "https://gpu.example.com:8000/v1", "api_key": "s3cret", "models": "smol, oss"}
    for user in (alice, audrey):
        assert client_for(user).post("/engines/external/new/", form).status_code == 403
    assert client.post("/engines/external/new/", form).status_code == 302  # to the login page
    assert not EngineConfig.objects.exists()
    assert client_for(adam).get("/engines/external/new/").status_code == 200
    response = client_for(adam).post("/engines/external/new/", form)
    assert response.status_code == 302
    assert response["Location"] == "/engines/remote/"
    config = EngineConfig.objects.get(name="remote")
    assert (config.kind, config.url) == ("external", "https://gpu.example.com:8000")
    assert config.pinned_models == ["smol", "oss"]
    assert "s3cret" not in config.api_key_encrypted
    assert engine_api_key(config) == "s3cret"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "error"),
    [("http://10.0.0.5:8000", "is not allowed by PORTAL_EXTERNAL_ENGINE_ALLOWED"), ("gopher://x", "not an http://")],
)
def test_a_refused_registration_on_the_page_says_why_and_writes_nothing(client_for, adam, settings, url, error):
    settings.EXTERNAL_ENGINE_ALLOWED = ["*.example.com"]
    response = client_for(adam).post("/engines/external/new/", {"name": "remote", "url": url, "api_key": "k"})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not EngineConfig.objects.exists()


@pytest.mark.django_db
def test_the_engines_page_shows_the_kind_the_probe_sentence_and_no_start_stop(client_for, adam):
    managed("local", "smol", State.READY)
    external("remote", "https://gpu.example.com", State.UNREACHABLE, models=[])
    EngineState.objects.filter(engine__name="remote").update(message="Unreachable: cannot connect to x: refused.")
    page = client_for(adam).get("/engines/").content.decode()
    assert 'data-kind="external"' in page
    assert 'data-kind="managed"' in page
    assert "Unreachable: cannot connect to x: refused." in page
    assert "the portal does not start or stop it" in page
    assert page.count('data-action="start"') == 1  # only the managed engine has buttons
    detail = client_for(adam).get("/engines/remote/")
    assert detail.status_code == 200
    assert "https://gpu.example.com" in detail.content.decode()
    rows = {row["name"]: row for row in client_for(adam).get("/engines/status.json").json()["engines"]}
    assert rows["remote"]["kind"] == "external"
    assert rows["remote"]["detail"] == "Unreachable: cannot connect to x: refused."


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_start_and_stop_of_an_external_engine_are_refused_with_a_sentence(client_for, adam, action):
    external("remote", "https://gpu.example.com", State.READY, models=["smol"])
    response = client_for(adam).post(f"/engines/remote/{action}/", follow=True)
    assert response.status_code == 200
    assert "is an external engine: the portal does not start or stop it" in response.content.decode()
    with pytest.raises(CommandError, match="external engine"):
        call_command("engine", action, "remote")
    assert EngineConfig.objects.get(name="remote").desired_state == "running"


@pytest.mark.django_db
def test_metrics_show_an_external_engine_from_the_probe_without_calling_it(settings, stub, key_file):
    from tests.test_metrics import TOKEN, scrape, value

    settings.PORTAL_METRICS_TOKEN = TOKEN
    stub.running = 3
    add_external("cluster", stub.url, "--api-key-file", str(key_file))
    probed("cluster", State.READY)
    calls = len(stub.seen_paths)
    samples = scrape()
    assert value(samples, "portal_engine_requests_running", engine="cluster") == 3
    assert value(samples, "portal_engine_state", engine="cluster", state="ready") == 1
    assert len(stub.seen_paths) == calls  # the web process never called the external engine


@pytest.mark.django_db
def test_doctor_reports_an_external_engine_state_and_what_to_do(settings, tmp_path):
    settings.ENGINE_VENV = tmp_path / "no-engine-venv"
    from inference.health_checks import check_engines

    external("remote", "https://gpu.example.com", State.UNAUTHORIZED, models=[])
    EngineState.objects.update(message="The engine refused the portal's API key (HTTP 401 from /v1/models).",
                               remedies=["Register it again with the right key."])  # fmt: skip
    external("ok", "https://gpu3.example.com", State.READY, models=["smol"])
    findings = {finding.check: finding for finding in check_engines()}
    assert "engine install" not in findings  # fronting external engines only needs no vLLM here
    bad = findings["engine remote (external, https://gpu.example.com)"]
    assert bad.status == doctor.FAIL
    assert bad.detail == "The engine refused the portal's API key (HTTP 401 from /v1/models)."
    assert bad.fix == "Register it again with the right key."
    assert findings["engine ok"].status == doctor.OK
    assert findings["engine ok"].detail == "ready, serving smol."
