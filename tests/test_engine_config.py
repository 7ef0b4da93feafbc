"""The engine config form: impossible values, unknown and unsafe flags, and configs that cannot fit."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from inference.forms import EngineConfigForm
from inference.launch_command import build_launch
from inference.models import EngineConfig, HostReading
from inference.planner import GIB
from inference.vllm_flags import parse_extra_flags

pytestmark = [pytest.mark.django_db]

DEMO = "/srv/models/SmolLM2-135M-Instruct"


def form_data(**changes):
    data = {
        "name": "demo",
        "served_model_name": "SmolLM2-135M-Instruct",
        "model": DEMO,
        "device": "cpu",
        "dtype": "auto",
        "max_model_len": "2048",
        "gpu_memory_utilization": "0.9",
        "tensor_parallel_size": "1",
        "pipeline_parallel_size": "1",
        "max_num_seqs": "8",
        "enable_chunked_prefill": "on",
        "enable_prefix_caching": "on",
        "kv_cache_dtype": "auto",
        "cpu_kv_cache_gib": "1",
        "reasoning_parser": "",
        "scheduling_policy": "fcfs",
        "extra_flags": "--enforce-eager",
        "desired_state": "stopped",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_a_sensible_cpu_config_is_accepted():
    form = EngineConfigForm(data=form_data())
    assert form.is_valid(), form.errors
    config = form.save()
    assert config.extra_flags == "--enforce-eager"


def test_the_form_asks_for_no_port_the_engine_listens_on_its_socket():
    assert "port" not in EngineConfigForm().fields


def test_a_managed_engine_needs_a_served_model_name():
    with pytest.raises(ValidationError) as refused:
        EngineConfig(name="nameless", model=DEMO).full_clean()
    assert refused.value.message_dict == {"served_model_name": ["Required for a managed engine."]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gpu_memory_utilization", "1.5", "less than or equal to 0.98"),
        ("gpu_memory_utilization", "-0.1", "greater than or equal to 0.05"),
        ("max_model_len", "-5", "greater than or equal to 0"),
        ("max_model_len", "8", "greater than or equal to 16"),
        ("tensor_parallel_size", "0", "greater than or equal to 1"),
        ("max_num_seqs", "0", "greater than or equal to 1"),
        ("cpu_kv_cache_gib", "0", "greater than or equal to 1"),
        ("device", "tpu", "not one of the available choices"),
        ("kv_cache_dtype", "int3", "not one of the available choices"),
        ("reasoning_parser", "my_parser", "not one of the available choices"),
        ("model", "--trust-remote-code", "absolute path"),
        ("served_model_name", "bad name!", "letters, digits"),
    ],
)
def test_impossible_values_are_field_errors(field, value, message):
    form = EngineConfigForm(data=form_data(**{field: value}))
    assert not form.is_valid()
    assert message in " ".join(map(str, form.errors[field]))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--host 0.0.0.0", "--host is not allowed: the engine listens on a private Unix socket"),
        ("--port 8000", "--port is not allowed: the engine listens on a private Unix socket"),
        ("--uds /tmp/engine.sock", "--uds is not allowed: the supervisor chooses the engine's private Unix socket"),
        ("--api-key secret", "--api-key is not allowed: the supervisor gives each launch a fresh key"),
        ("--allowed-origins *", "--allowed-origins is not allowed"),
        ("--trust-remote-code", "--trust-remote-code is not allowed: it runs code shipped with the model"),
        ("--middleware evil.Middleware", "it imports arbitrary code"),
        ("--enable-log-requests", "personal data"),
        ("--chat-template /etc/passwd", "reads an arbitrary file"),
        ("--max-model-len 4096", "--max-model-len has its own field"),
        ("--gpu-memory-utilization=0.5", "set the GPU memory utilization field instead"),
        ("--frobnicate", "--frobnicate is not on the allow-list"),
        ("--max-num-batched-tokens", "--max-num-batched-tokens needs a value"),
        ("--max-num-batched-tokens lots", "needs a whole number"),
        ("--max-num-batched-tokens 5", "must be between 16 and"),
        ("--block-size 7", "must be one of: 8, 16, 32, 64, 128"),
        ("--enforce-eager=yes", "--enforce-eager takes no value"),
        ("--enforce-eager --enforce-eager", "--enforce-eager is given twice"),
        ("--override-generation-config [1]", "must be a JSON object"),
        ("hello", "'hello' is not a flag"),
        ('--seed "1', "cannot be read"),
    ],
)
def test_unknown_and_unsafe_flags_are_refused_with_the_reason(flags, message):
    form = EngineConfigForm(data=form_data(extra_flags=flags))
    assert not form.is_valid()
    assert message in " ".join(map(str, form.errors["extra_flags"]))


@pytest.mark.parametrize(
    ("ray_address", "message"),
    [
        ("", "set PORTAL_ENGINE_RAY_ADDRESS to the private IP:PORT of your Ray head"),
        ("93.184.216.34:6379", "is not a private address; Ray must not face a public network"),
        ("0.0.0.0:6379", "is not a private address"),
        ("ray-head.example.com:6379", "must be IP:PORT with a private IP address"),
        ("10.0.0.5", "must be IP:PORT"),
    ],
)
def test_the_ray_backend_is_refused_unless_multi_node_serving_is_set_up_on_a_private_address(
    settings, ray_address, message
):
    settings.ENGINE_RAY_ADDRESS = ray_address
    form = EngineConfigForm(data=form_data(extra_flags="--distributed-executor-backend ray"))
    assert not form.is_valid()
    errors = " ".join(map(str, form.errors["extra_flags"]))
    assert "--distributed-executor-backend 'ray'" in errors
    assert message in errors
    with pytest.raises(ValidationError, match="PORTAL_ENGINE_RAY_ADDRESS"):
        orm_config(extra_flags="--distributed-executor-backend ray").save()


@pytest.mark.parametrize("ray_address", ["10.0.0.5:6379", "192.168.1.20:6379", "[fd00::5]:6379"])
def test_the_ray_backend_joins_the_private_cluster_set_up_on_purpose(settings, tmp_path, ray_address):
    settings.ENGINE_RAY_ADDRESS = ray_address
    form = EngineConfigForm(data=form_data(extra_flags="--distributed-executor-backend ray"))
    assert form.is_valid(), form.errors
    config = form.save()
    launch = build_launch(config, tmp_path / "python", api_key="k", mark="m", socket=tmp_path / "e.sock")
    assert launch.argv[-2:] == ["--distributed-executor-backend", "ray"]
    assert launch.env["RAY_ADDRESS"] == ray_address, "vLLM joins that cluster instead of starting its own"


def test_the_other_executor_backends_need_no_ray_address(settings, tmp_path):
    settings.ENGINE_RAY_ADDRESS = ""
    form = EngineConfigForm(data=form_data(extra_flags="--distributed-executor-backend mp"))
    assert form.is_valid(), form.errors
    launch = build_launch(form.save(), tmp_path / "python", api_key="k", mark="m", socket=tmp_path / "e.sock")
    assert "RAY_ADDRESS" not in launch.env


def test_every_refused_flag_is_reported_at_once():
    with pytest.raises(ValidationError) as caught:
        parse_extra_flags("--host 0.0.0.0 --port 1 --frobnicate --seed 3")
    assert len(caught.value.messages) == 3


def test_allowed_flags_reach_the_command_line_and_the_key_stays_out_of_it(tmp_path):
    config = EngineConfig(
        **{**form_data(extra_flags="--enforce-eager --max-num-batched-tokens=4096 --seed 7"), "max_model_len": 2048}
    )
    config.enable_chunked_prefill = False
    launch = build_launch(config, tmp_path / "python", api_key="k3y", mark="demo:1", socket=tmp_path / "e.sock")
    argv = launch.argv
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--uds") + 1] == str(tmp_path / "e.sock")
    assert "--host" not in argv, "no TCP listener: the socket is the only way in"
    assert "--port" not in argv
    assert "--no-enable-chunked-prefill" in argv
    assert argv[-5:] == ["--enforce-eager", "--max-num-batched-tokens", "4096", "--seed", "7"]
    assert "--gpu-memory-utilization" not in argv  # a CPU engine
    assert "k3y" not in " ".join(argv)
    assert launch.env["VLLM_API_KEY"] == "k3y"
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert launch.env["VLLM_NO_USAGE_STATS"] == "1"
    again = build_launch(config, tmp_path / "python", api_key="other", mark="demo:2", socket=tmp_path / "e.sock")
    assert again.fingerprint == launch.fingerprint, "a new key is not a configuration change"


def test_a_running_config_that_cannot_fit_is_refused_unless_an_admin_overrides_it():
    data = form_data(model="openai/gpt-oss-20b", device="cpu", max_model_len="131072", cpu_kv_cache_gib="1")
    stopped = EngineConfigForm(data=data)
    assert stopped.is_valid(), "a stopped config is only planned when started"
    refused = EngineConfigForm(data={**data, "desired_state": "running"})
    assert not refused.is_valid()
    message = " ".join(map(str, refused.errors["__all__"]))
    assert "does not fit" in message
    assert "cannot hold one sequence of 131072 tokens" in message
    assert "Lower max model length to at most" in message
    assert "ignore memory plan" in message
    overridden = EngineConfigForm(data={**data, "desired_state": "running", "ignore_memory_plan": "on"})
    assert overridden.is_valid(), overridden.errors


def test_the_start_command_refuses_a_config_that_cannot_fit(capsys):
    from django.core.management import CommandError, call_command

    EngineConfig.objects.create(
        name="oss", served_model_name="gpt-oss-20b", model="openai/gpt-oss-20b", cpu_kv_cache_gib=1
    )
    with pytest.raises(CommandError, match="does not fit"):
        call_command("engine", "start", "oss")
    assert EngineConfig.objects.get(name="oss").desired_state == "stopped"
    call_command("engine", "start", "oss", "--ignore-memory-plan")
    assert EngineConfig.objects.get(name="oss").desired_state == "running"


@pytest.fixture
def gpu_host():
    """The engine host's supervisor reported two 24 GB GPUs."""
    gpus = [{"index": index, "name": "NVIDIA L4", "memory_total": 24 * GIB, "memory_used": 0} for index in (0, 1)]
    return HostReading.objects.create(host="gpu-1", at=timezone.now(), gpus=gpus, cpu_count=16, memory_total=64 * GIB)


@pytest.mark.parametrize("field", ["tensor_parallel_size", "pipeline_parallel_size"])
def test_a_parallel_size_of_zero_on_a_gpu_host_is_a_field_error_not_a_crash(gpu_host, field):
    data = form_data(model="openai/gpt-oss-20b", device="cuda", max_model_len="8192", desired_state="running")
    form = EngineConfigForm(data={**data, field: "0"})
    assert not form.is_valid()
    assert "greater than or equal to 1" in " ".join(map(str, form.errors[field]))
    assert "__all__" not in form.errors, "an invalid config is not planned"
    planned = EngineConfigForm(data=data)
    assert planned.is_valid(), planned.errors


@pytest.mark.parametrize(
    ("chunked", "flags", "max_model_len", "valid"),
    [
        (None, "--max-num-batched-tokens 1024", "2048", False),
        (None, "--max-num-batched-tokens 2048", "2048", True),
        ("on", "--max-num-batched-tokens 1024", "2048", True),
        (None, "--max-num-batched-tokens 1024", None, True),
        (None, "--enforce-eager", "2048", True),
    ],
)
def test_chunked_prefill_off_needs_a_batch_that_holds_the_whole_context(chunked, flags, max_model_len, valid):
    form = EngineConfigForm(
        data=form_data(enable_chunked_prefill=chunked, extra_flags=flags, max_model_len=max_model_len)
    )
    assert form.is_valid() is valid, form.errors
    if not valid:
        message = " ".join(map(str, form.errors["extra_flags"]))
        assert "--max-num-batched-tokens (1024) must be at least the max model length (2048)" in message


# The allow-list is the model field's validator: no path around the form saves a refused flag.


def orm_config(**fields):
    defaults = {"name": "shell", "served_model_name": "shell-model", "model": DEMO}
    return EngineConfig(**{**defaults, **fields})


def test_saving_a_refused_flag_through_the_orm_fails_and_writes_nothing():
    with pytest.raises(ValidationError, match="--trust-remote-code is not allowed"):
        EngineConfig.objects.create(
            name="shell", served_model_name="shell-model", model=DEMO, extra_flags="--trust-remote-code"
        )
    assert not EngineConfig.objects.exists()


def test_saving_an_unknown_flag_on_an_existing_config_fails_and_keeps_the_stored_flags():
    config = orm_config(extra_flags="--enforce-eager")
    config.save()
    config.extra_flags = "--enforce-eager --made-up-flag"
    with pytest.raises(ValidationError, match="not on the allow-list"):
        config.save()
    assert EngineConfig.objects.get().extra_flags == "--enforce-eager"


def test_full_clean_reports_a_refused_flag_on_its_field():
    with pytest.raises(ValidationError) as refused:
        orm_config(extra_flags="--host 0.0.0.0").full_clean()
    assert "--host is not allowed" in " ".join(refused.value.message_dict["extra_flags"])


def test_a_flag_written_past_the_model_is_still_refused_at_launch_and_the_config_can_be_stopped(tmp_path):
    from inference.desired_state import stop_engine

    config = orm_config(desired_state=EngineConfig.Desired.RUNNING)
    config.save()
    # A bulk update() bypasses save(); the launch command checks the flags once more.
    EngineConfig.objects.filter(pk=config.pk).update(extra_flags="--middleware evil.Module")
    config.refresh_from_db()
    stop_engine(config)
    assert EngineConfig.objects.get().desired_state == EngineConfig.Desired.STOPPED
    with pytest.raises(ValidationError, match="--middleware is not allowed"):
        build_launch(config, tmp_path / "python", "key", "mark", socket=tmp_path / "e.sock")


def test_the_demo_engine_is_validated_like_the_form_validates_a_config(tmp_path):
    from inference.demo import DEMO_FLAGS, create_demo_engine

    with pytest.raises(ValidationError) as refused:
        create_demo_engine(tmp_path / "SmolLM2-135M-Instruct", max_model_len=1)
    assert "max_model_len" in refused.value.message_dict
    assert not EngineConfig.objects.exists()
    demo = create_demo_engine(tmp_path / "SmolLM2-135M-Instruct")
    assert (demo.extra_flags, demo.desired_state) == (DEMO_FLAGS, EngineConfig.Desired.RUNNING)


def test_preparedemo_with_an_impossible_value_says_so_and_creates_nothing(monkeypatch, tmp_path):
    from django.core.management import CommandError, call_command

    monkeypatch.setattr(
        "inference.management.commands.preparedemo.prepare_demo_model",
        lambda models_dir: (models_dir / "SmolLM2-135M-Instruct", False),
    )
    with pytest.raises(CommandError, match="max_model_len: Ensure this value is greater than or equal to 16"):
        call_command("preparedemo", "--models-dir", str(tmp_path), "--max-model-len", "1")
    assert not EngineConfig.objects.exists()
