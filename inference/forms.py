"""The engine config form: field errors for impossible values, unsafe flags and configs that cannot fit."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from inference.desired_state import memory_plan
from inference.external_engines import ExternalSpec
from inference.models import EngineConfig


class EngineConfigForm(forms.ModelForm):  # type: ignore[type-arg]
    """Validate an engine config; refuse a running config the planner says cannot fit.

    The model's validators bound each number and check the flag allow-list, and its
    ``clean()`` refuses combinations vLLM refuses; this form adds the memory plan
    (overridable with ``ignore_memory_plan``).
    """

    class Meta:
        model = EngineConfig
        fields = [
            "name",
            "served_model_name",
            "model",
            "device",
            "dtype",
            "max_model_len",
            "gpu_memory_utilization",
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "max_num_seqs",
            "enable_chunked_prefill",
            "enable_prefix_caching",
            "kv_cache_dtype",
            "cpu_kv_cache_gib",
            "reasoning_parser",
            "scheduling_policy",
            "extra_flags",
            "desired_state",
            "ignore_memory_plan",
        ]
        widgets = {"extra_flags": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Optional on the model only because external engines have none (this form is for managed ones).
        self.fields["served_model_name"].required = True

    def clean_extra_flags(self) -> str:
        # The allow-list itself is the model field's validator (inference.vllm_flags).
        return str(self.cleaned_data.get("extra_flags") or "").strip()

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if self.errors:
            return cleaned
        if cleaned.get("desired_state") != EngineConfig.Desired.RUNNING or cleaned.get("ignore_memory_plan"):
            return cleaned
        # The instance gets the cleaned values, and the model's validators run, only after
        # clean(): validate a copy first, and plan only a valid one (a tensor parallel size of
        # 0 is a field error, not a plan). The model's errors are reported on their fields later.
        candidate = EngineConfig(pk=self.instance.pk, **{name: cleaned[name] for name in self.Meta.fields})
        try:
            candidate.clean_fields()
            candidate.clean()
        except ValidationError:
            return cleaned
        plan = memory_plan(candidate)
        if plan is not None and plan.fits is False:
            advice = " ".join(plan.advice)
            raise ValidationError(
                f"This configuration does not fit: {' '.join(plan.problems)} {advice} "
                "Tick “ignore memory plan” to start it anyway.",
                code="does_not_fit",
            )
        return cleaned


class ExternalEngineForm(forms.Form):
    """Register an external engine from the engines page (admins only): what ``engine add-external`` takes."""

    name = forms.SlugField(max_length=64, help_text="Short name, shown on the engines page and in the audit trail.")
    url = forms.CharField(max_length=500, help_text="Base URL, e.g. https://gpu-b.internal:8000")
    api_key = forms.CharField(
        required=False, max_length=4096, widget=forms.PasswordInput, help_text="Stored encrypted; never shown again."
    )
    ca_bundle = forms.CharField(
        required=False, max_length=500, help_text="Path of a PEM CA bundle on the portal hosts."
    )
    models = forms.CharField(
        required=False, max_length=2000, help_text="Pinned model names, comma-separated; empty: what /v1/models lists."
    )

    def spec(self) -> ExternalSpec:
        """Return the registration the (valid) form describes."""
        data = self.cleaned_data
        models = tuple(model.strip() for model in data["models"].split(",") if model.strip())
        return ExternalSpec(
            name=data["name"], url=data["url"], api_key=data["api_key"], ca_bundle=data["ca_bundle"].strip(),
            models=models,
        )  # fmt: skip
