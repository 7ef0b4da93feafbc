"""The demo engine starts with the sampling defaults SmolLM2's model card recommends.

vLLM's generation-config override carries them (temperature 0.2, top-p 0.9); a request that
sets its own temperature or top_p still wins (vLLM applies request values over the defaults).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.demo import DEMO_SAMPLING_DEFAULTS, create_demo_engine
from inference.launch_command import build_launch
from inference.vllm_flags import parse_extra_flags
from tests.stack import Stack


def test_the_demo_defaults_are_the_model_cards() -> None:
    assert DEMO_SAMPLING_DEFAULTS == {"temperature": 0.2, "top_p": 0.9}


@pytest.mark.django_db
def test_the_demo_engine_is_launched_with_the_generation_config_override(tmp_path: Path) -> None:
    config = create_demo_engine(tmp_path / "SmolLM2-135M-Instruct")
    config.full_clean()  # the flags pass the allow-list, as in the admin form
    flags = dict(parse_extra_flags(config.extra_flags))
    assert "--enforce-eager" in flags
    argv = build_launch(config, Path("/engine/python"), api_key="k", mark="m", socket=tmp_path / "e.sock").argv
    override = argv[argv.index("--override-generation-config") + 1]
    assert json.loads(override) == {"temperature": 0.2, "top_p": 0.9}


@pytest.mark.engine
def test_the_running_demo_engine_applies_the_defaults(engine_stack: Stack) -> None:
    log = (engine_stack.data_dir / "logs" / f"engine-{engine_stack.engine_name}.log").read_text(errors="replace")
    lines = [line for line in log.splitlines() if "sampling parameters have been overridden" in line]
    assert lines, "vLLM did not report the overridden sampling defaults"
    assert "'temperature': 0.2" in lines[-1]
    assert "'top_p': 0.9" in lines[-1]
