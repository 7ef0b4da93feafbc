"""Counting prompts keeps one HTTP client: building one per count cost more CPU than the count."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from inference import prompt_tokens
from inference.engine_router import EngineTarget
from tests.chat_stub_engine import MODEL, StubEngine


@pytest.fixture
def engine() -> Any:
    stub = StubEngine()
    yield stub
    stub.close()


def test_counting_prompts_reuses_one_client(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[httpx.Client] = []
    original = httpx.Client.__init__

    def counting_init(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(prompt_tokens, "_clients", {})
    monkeypatch.setattr(httpx.Client, "__init__", counting_init)
    target = EngineTarget(name="stub", base_url=engine.url, api_key="k", served_model=MODEL, reasoning=False)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    counts = [prompt_tokens.count_prompt_tokens(target, messages) for _ in range(3)]
    assert counts == [counts[0]] * 3
    assert counts[0][1] is True  # exact: the engine counted it
    assert len(engine.tokenized) == 3
    assert len(built) == 1
