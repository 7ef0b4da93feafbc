"""Routing requests to engines, what users see when none is ready, /readyz, and the status socket."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from inference.engine_client import ChatRequest, EngineError, stream_chat
from inference.engine_router import EngineUnavailable, pick_engine
from inference.generation import prepare
from inference.models import EngineConfig, EngineState
from inference.rejections import GenerationRejected
from inference.sampling import parse_sampling
from inference.status import model_choices
from tests.websocket import open_socket

State = EngineState.State


def engine(name: str, model: str, state: str | None, *, load: int = 0, progress=None, stale=False, parser=""):
    config = EngineConfig.objects.create(
        name=name, served_model_name=model, model=f"/srv/{name}", reasoning_parser=parser,
        desired_state="running",
    )  # fmt: skip
    if state is not None:
        EngineState.objects.create(
            engine=config, state=state, progress=progress, running_requests=load,
            base_url=f"unix:/run/portal-test/{name}.sock", api_key=f"key-{name}",
            heartbeat_at=timezone.now() - timedelta(minutes=10 if stale else 0),
        )  # fmt: skip
    return config


@pytest.mark.django_db
def test_no_engine_at_all_is_said_plainly():
    with pytest.raises(EngineUnavailable) as caught:
        pick_engine(None)
    assert caught.value.state == "none"
    assert caught.value.message == "no engine is configured — please ask an admin to add one"


@pytest.mark.django_db
def test_a_loading_engine_says_how_far_it_is():
    engine("demo", "smol", State.LOADING, progress=0.45)
    with pytest.raises(EngineUnavailable) as caught:
        pick_engine("smol")
    assert caught.value.state == "loading"
    assert caught.value.message == "model loading 45%"
    assert caught.value.progress == 0.45


@pytest.mark.django_db
def test_a_stopped_engine_and_a_dead_supervisor_read_as_stopped():
    engine("demo", "smol", State.STOPPED)
    with pytest.raises(EngineUnavailable) as caught:
        pick_engine("smol")
    assert caught.value.state == "stopped"
    assert caught.value.message == "engine stopped — please ask an admin to start it"
    engine("orphan", "other", State.READY, stale=True)
    with pytest.raises(EngineUnavailable) as stale:
        pick_engine("other")
    assert stale.value.state == "stopped"
    assert stale.value.message == "engine supervisor is not running — please tell an admin"


@pytest.mark.django_db
def test_an_unknown_model_is_named():
    engine("demo", "smol", State.READY)
    with pytest.raises(EngineUnavailable) as caught:
        pick_engine("gpt-5")
    assert caught.value.state == "unknown_model"
    assert "'gpt-5'" in caught.value.message


@pytest.mark.django_db
def test_a_request_goes_to_the_least_loaded_ready_engine_serving_the_model():
    engine("busy", "oss", State.READY, load=7, parser="openai_gptoss")
    engine("idle", "oss", State.READY, load=1, parser="openai_gptoss")
    engine("broken", "oss", State.CRASHED)
    engine("other", "smol", State.READY, load=0)
    target = pick_engine("oss")
    assert target.name == "idle"
    assert target.api_key == "key-idle"
    assert target.reasoning is True
    # No model named: the first-configured ready engine's model ("oss"), then its least loaded
    # engine; never a different model because its engine happens to be idler.
    assert (pick_engine(None).served_model, pick_engine(None).name) == ("oss", "idle")


@pytest.mark.django_db
def test_model_choices_show_each_model_once_with_its_best_state():
    engine("a", "oss", State.CRASH_LOOP)
    engine("b", "oss", State.LOADING, progress=0.2)
    engine("c", "smol", State.READY, parser="")
    choices = {choice["model"]: choice for choice in model_choices()}
    assert choices["oss"]["state"] == "loading"
    assert choices["oss"]["engine"] == "b"
    assert choices["oss"]["message"] == "model loading 20%"
    assert choices["smol"]["state"] == "ready"
    assert choices["smol"]["reasoning"] is False


@pytest.mark.django_db
def test_a_generation_for_a_loading_engine_is_refused_with_its_progress(alice):
    engine("demo", "smol", State.LOADING, progress=0.5)
    with pytest.raises(GenerationRejected) as caught:
        prepare(alice.pk, [{"role": "user", "content": "hi"}], parse_sampling({}, alice), source="test")
    assert caught.value.code == "engine_unavailable"
    assert caught.value.details == {"state": "loading", "progress": 0.5, "model": "smol"}
    assert caught.value.message == "model loading 50%"


@pytest.mark.django_db(transaction=True)
async def test_a_ready_engine_that_does_not_answer_is_reported_not_raised_raw():
    await sync_to_async(engine)("gone", "smol", State.READY)
    target = await sync_to_async(pick_engine)(None)
    with pytest.raises(EngineError) as caught:
        await anext(stream_chat(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=5), target))
    assert caught.value.code == "engine_unavailable"
    assert "not answering" in caught.value.message


@pytest.mark.django_db
def test_readyz_lists_the_engine_states_and_stays_ready_while_an_engine_loads(settings, adam, client_for):
    engine("demo", "smol", State.LOADING, progress=0.3)
    body = client_for(adam).get("/readyz").json()  # the details are for admins only
    assert body["ready"] is True
    assert body["checks"]["engines"]["serving"] is False
    assert body["checks"]["engines"]["engines"][0]["message"] == "model loading 30%"
    settings.ENGINE_REQUIRED_FOR_READY = True
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["engines"]["ok"] is False


@pytest.mark.django_db(transaction=True)
async def test_the_status_socket_pushes_a_change_the_supervisor_wrote(alice, monkeypatch):
    from inference import consumers

    monkeypatch.setattr(consumers, "POLL_SECONDS", 0.1)
    config = await sync_to_async(engine)("demo", "smol", State.LOADING, progress=0.1)
    communicator, connected, _ = await open_socket("/ws/status/", alice)
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first["engines"][0]["message"] == "model loading 10%"
    assert "api_key" not in first["engines"][0]
    await sync_to_async(EngineState.objects.filter(engine=config).update)(state=State.READY, progress=None)
    second = await communicator.receive_json_from(timeout=5)
    assert second["engines"][0]["state"] == "ready"
    await communicator.disconnect()


@pytest.mark.django_db
def test_a_policy_that_allows_no_served_model_is_said_plainly():
    engine("demo", "smol", State.READY)
    with pytest.raises(EngineUnavailable) as caught:
        pick_engine(None, frozenset({"gpt-5"}))
    assert caught.value.state == "none"
    assert "policy allows" in caught.value.message


@pytest.mark.django_db
def test_no_model_named_under_a_policy_gets_a_model_the_policy_allows():
    engine("first", "oss", State.READY)
    engine("second", "smol", State.READY)
    target = pick_engine(None, frozenset({"smol"}))
    assert (target.name, target.served_model) == ("second", "smol")
