"""The /v1 API as people use it: the official ``openai`` client against Daphne and the real engine.

A Daphne process runs on the engine stack (tests/stack.py); keys are made with the
``apikey`` command, as an operator would. Disconnects are checked on vLLM's own
``/metrics``: its running requests return to 0.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.stack import Stack, wait_until
from tests.test_chat_engine import running_requests

pytestmark = pytest.mark.engine

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and his cat."}]


def shell(stack: Stack, code: str) -> str:
    return stack.manage("shell", "-c", code).stdout.strip()


@pytest.fixture(scope="module")
def portal(engine_stack: Stack) -> tuple[Stack, str, str]:
    """A web process on the stack and a member of it; returns (stack, /v1 URL, username)."""
    url, _ = engine_stack.start_web()
    username = f"api{secrets.token_hex(3)}"
    shell(
        engine_stack,
        "from django.contrib.auth import get_user_model; from accounts.roles import MEMBERS, assign_role; "
        f"assign_role(get_user_model().objects.create_user({username!r}, password='x' * 20), MEMBERS)",
    )
    return engine_stack, f"{url}/v1", username


def new_key(stack: Stack, username: str, *options: str) -> str:
    return stack.manage("apikey", "create", username, "--name", "test", *options).stdout.strip()


def client(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)


def test_the_openai_client_lists_the_model_and_gets_a_whole_answer(portal: Any) -> None:
    stack, base_url, username = portal
    api = client(base_url, new_key(stack, username))
    # Other engines of the session (the tiny gpt-oss one) may be listed too.
    assert stack.served_model in [model.id for model in api.models.list()]
    answer = api.chat.completions.create(model=stack.served_model, messages=QUESTION, max_tokens=30, temperature=0)
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > 0
    assert 0 < answer.usage.completion_tokens <= 30


def test_the_openai_client_streams_an_answer_with_usage_in_the_last_chunk(portal: Any) -> None:
    stack, base_url, username = portal
    api = client(base_url, new_key(stack, username))
    chunks = list(
        api.chat.completions.create(
            model=stack.served_model,
            messages=QUESTION,
            max_tokens=40,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.strip()
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None
    assert 0 < usage.completion_tokens <= 40
    # Coalesced frames: never more text chunks than tokens.
    assert sum(1 for chunk in chunks if chunk.choices and chunk.choices[0].delta.content) <= usage.completion_tokens


def test_a_revoked_key_gets_a_401_on_its_next_request(portal: Any) -> None:
    stack, base_url, username = portal
    key = new_key(stack, username)
    api = client(base_url, key)
    assert api.models.list().data
    stack.manage("apikey", "revoke", key[:11])
    with pytest.raises(openai.AuthenticationError) as caught:
        api.chat.completions.create(model=stack.served_model, messages=QUESTION, max_tokens=5)
    assert caught.value.status_code == 401
    assert "revoked" in str(caught.value)


def test_an_expired_key_gets_a_401(portal: Any) -> None:
    stack, base_url, username = portal
    key = new_key(stack, username, "--expires", "1")
    shell(
        stack,
        "from datetime import timedelta; from django.utils import timezone; from accounts.models import ApiKey; "
        f"ApiKey.objects.filter(prefix={key[:11]!r}).update(expires_at=timezone.now() - timedelta(seconds=1))",
    )
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client(base_url, key).models.list()


def test_a_key_limited_to_another_model_gets_a_403_and_lists_nothing_ready(portal: Any) -> None:
    stack, base_url, username = portal
    other = f"other-{secrets.token_hex(2)}"
    shell(
        stack,
        "from inference.models import EngineConfig; "
        f"EngineConfig.objects.create(name={other!r}, served_model_name={other!r}, model='/models/x')",
    )
    api = client(base_url, new_key(stack, username, "--models", other))
    assert api.models.list().data == []
    with pytest.raises(openai.PermissionDeniedError) as caught:
        api.chat.completions.create(model=stack.served_model, messages=QUESTION, max_tokens=5)
    assert caught.value.status_code == 403
    with pytest.raises(openai.InternalServerError) as loading:
        api.chat.completions.create(model=other, messages=QUESTION, max_tokens=5)
    assert loading.value.status_code == 503


def test_the_key_of_a_deactivated_owner_gets_a_401(portal: Any) -> None:
    stack, base_url, _ = portal
    username = f"gone{secrets.token_hex(3)}"
    shell(
        stack,
        "from django.contrib.auth import get_user_model; from accounts.roles import MEMBERS, assign_role; "
        f"assign_role(get_user_model().objects.create_user({username!r}, password='x' * 20), MEMBERS)",
    )
    key = new_key(stack, username)
    api = client(base_url, key)
    assert api.models.list().data
    shell(
        stack,
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.filter(username={username!r}).update(is_active=False)",
    )
    with pytest.raises(openai.AuthenticationError, match="deactivated"):
        api.models.list()


def test_a_client_that_disconnects_mid_stream_aborts_the_engine_request(portal: Any) -> None:
    stack, base_url, username = portal
    key = new_key(stack, username)
    wait_until(lambda: running_requests(stack) == 0, 60, "an idle engine")
    body = {"model": stack.served_model, "messages": STORY, "max_tokens": 1500, "temperature": 0, "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, headers=headers, timeout=120) as response:
        assert response.status_code == 200
        events = 0
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                events += 1
            if events >= 3:
                # Still reading: vLLM is working on it. (Leaving the loop closes the stream.)
                assert running_requests(stack) >= 1
                break
    # Leaving the loop closed the connection mid-answer: the portal must abort upstream. The
    # whole story (up to 1500 tokens) takes vLLM on these CPUs about a minute, so nothing
    # running within 10 s means it was aborted. (vLLM does not count client aborts in
    # vllm:request_success_total, so the running gauge is the signal.)
    wait_until(lambda: running_requests(stack) == 0, 10, "vLLM's running requests to return to 0")
