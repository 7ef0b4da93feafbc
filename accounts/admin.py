"""Django admin of the accounts app: API keys, policies and their assignments, the usage report, adjustments.

Admins list and revoke anyone's API keys here; keys are created by their owners (or the CLI).

The ledger's own rows (counters, reservations) are read-only here: only accounts/ledger.py
writes them, so the admin cannot break the bookkeeping. Manual corrections go through
:class:`AdjustmentAdmin`, which calls the ledger and requires a reason.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from accounts import api_keys, ledger, usage
from accounts.models import Adjustment, ApiKey, DailyUsage, GroupPolicy, Policy, Reservation, UserPolicy
from accounts.policies import LIMIT_FIELDS, describe, from_policy, record_quota_change, served_model_names
from portal.read_only_admin import ReadOnlyAdmin


class PolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    """A policy, with its models picked from the served names (the model's clean() checks them too)."""

    model_names = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Used when 'all models' is off.",
    )

    class Meta:
        model = Policy
        fields = ["name", "all_models", "model_names", *LIMIT_FIELDS, "priority"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        served = served_model_names()
        # A name no longer served stays listed, so saving the form does not drop it silently.
        kept = [name for name in (self.instance.model_names or []) if name not in served]
        field = self.fields["model_names"]
        assert isinstance(field, forms.MultipleChoiceField)  # noqa: S101 - declared above
        field.choices = [(name, name) for name in [*served, *kept]]
        listed = ", ".join(served) if served else "none (no engine is configured)"
        field.error_messages["invalid_choice"] = f"Unknown model %(value)s: the served models are {listed}."


class GroupPolicyInline(admin.TabularInline):  # type: ignore[type-arg]
    model = GroupPolicy
    extra = 1
    verbose_name = "group with this policy"
    verbose_name_plural = "groups with this policy"


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = PolicyForm
    inlines = [GroupPolicyInline]
    list_display = ["name", "all_models", "tokens_per_day", "tokens_per_month", "concurrent_answers", "priority"]
    search_fields = ["name"]

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:
        before = describe(from_policy(Policy.objects.get(pk=obj.pk), obj.name)) if change else None
        super().save_model(request, obj, form, change)
        after = describe(from_policy(obj, obj.name))
        record_quota_change(
            "policy.change" if change else "policy.create", actor=request.user, target=obj, before=before, after=after
        )

    def delete_model(self, request: HttpRequest, obj: Policy) -> None:
        before = describe(from_policy(obj, obj.name))
        super().delete_model(request, obj)
        record_quota_change("policy.delete", actor=request.user, target=obj, before=before, after=None)


@admin.register(GroupPolicy)
class GroupPolicyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["group", "policy"]


@admin.register(UserPolicy)
class UserPolicyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["user", "policy"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ["request_id", "user", "model", "channel", "day", "prompt_tokens", "max_tokens", "outcome"]
    list_filter = ["channel", "outcome", "day"]
    search_fields = ["request_id", "user__username"]


class ReportForm(forms.Form):
    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end:
            try:
                usage.check_range(start, end)
            except ValueError as exc:
                raise forms.ValidationError(str(exc).capitalize() + ".") from None
        return data


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnlyAdmin):
    """The daily roll-up, and the report per user, model and channel for a date range (``report/``)."""

    list_display = ["day", "user", "model", "channel", "requests", "prompt_tokens", "completion_tokens"]
    list_filter = ["channel", "day"]
    search_fields = ["user__username", "model"]
    change_list_template = "admin/accounts/dailyusage/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        report = path("report/", self.admin_site.admin_view(self.report_view), name="accounts_dailyusage_report")
        return [report, *super().get_urls()]

    def report_view(self, request: HttpRequest) -> HttpResponse:
        today = ledger.periods().day
        initial = {"start": today.replace(day=1), "end": today}
        form = ReportForm(request.GET or initial)
        rows: list[dict[str, Any]] = []
        if form.is_valid():
            start: date = form.cleaned_data["start"]
            end: date = form.cleaned_data["end"]
            rows = usage.report(start, end)
            if request.GET.get("format") == "csv":
                response = HttpResponse(usage.report_csv(rows), content_type="text/csv; charset=utf-8")
                response["Content-Disposition"] = f'attachment; filename="usage-{start}-{end}.csv"'
                return response
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage report",
            "form": form,
            "rows": rows,
            "total": sum(row["total_tokens"] for row in rows),
            "opts": self.model._meta,
            "csv_query": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin/accounts/usage_report.html", context)


class AdjustmentForm(forms.ModelForm):  # type: ignore[type-arg]
    reason = forms.CharField(max_length=500, strip=True, help_text="Required: why the usage is corrected.")

    class Meta:
        model = Adjustment
        fields = ["user", "tokens", "reason"]

    def clean_tokens(self) -> int:
        tokens: int = self.cleaned_data["tokens"]
        if tokens == 0:
            raise forms.ValidationError("An adjustment of 0 tokens changes nothing.")
        if abs(tokens) > 10**12:
            raise forms.ValidationError("At most 10^12 tokens either way.")
        return tokens


@admin.register(Adjustment)
class AdjustmentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Manual corrections of today's usage; made through the ledger, never edited afterwards."""

    form = AdjustmentForm
    list_display = ["made_at", "user", "tokens", "reason", "made_by"]
    search_fields = ["user__username", "reason"]
    autocomplete_fields = ["user"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Adjustment, form: Any, change: bool) -> None:
        made = ledger.adjust(obj.user, tokens=obj.tokens, reason=obj.reason, actor=request.user)
        if made is None:
            messages.warning(request, f"{obj.user} used nothing today: there was nothing to give back.")
            return
        # The admin's response links to the saved object: the one the ledger made.
        obj.pk = made.pk
        obj.tokens, obj.day, obj.made_at = made.tokens, made.day, made.made_at

    def response_add(self, request: HttpRequest, obj: Adjustment, post_url_continue: str | None = None) -> HttpResponse:
        if obj.pk is None:
            return HttpResponseRedirect(reverse("admin:accounts_adjustment_changelist"))
        return super().response_add(request, obj, post_url_continue)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("prefix", "name", "owner", "status", "model_names", "created_at", "expires_at", "last_used_at")
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("prefix", "name", "owner__username", "owner__email")
    readonly_fields = ("owner", "prefix", "secret_hash", "created_at", "last_used_at", "revoked_at")
    fields = ("owner", "name", "prefix", "model_names", "expires_at", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_keys"]

    @admin.display(description="status")
    def status(self, key: ApiKey) -> str:
        return api_keys.status(key)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key's secret is shown once, to its owner: admins cannot create keys for others here.
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(api_keys.revoke(key) for key in queryset)
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # revoke, do not erase: the audit trail names the prefix
        return actions
