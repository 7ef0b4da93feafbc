"""Which policy applies to a user, and what a valid policy is.

The effective policy of a user is, in this order:

1. their per-user override (:class:`accounts.models.UserPolicy`), if they have one;
2. else the most generous of their groups' policies, field by field: a null (unlimited)
   limit beats any number, a larger number beats a smaller one, the union of the allowed
   models (one group with every model gives every model), and the lowest priority number
   (vLLM serves lower numbers first);
3. else the site default from the ``PORTAL_DEFAULT_POLICY_*`` settings.

Deleting a policy deletes its assignments (``on_delete=CASCADE``), so its users fall to the
next rule that applies.

Which model names are *served* is inference's knowledge, and inference depends on accounts
(the generation service calls the ledger), not the other way round. So inference hands a
callable to :func:`set_served_models` in its ``ready()``; accounts never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import CharField, Value

from accounts.models import GroupPolicy, Policy, UserPolicy

# The limits of a policy, in the order the pages show them; null means unlimited.
LIMIT_FIELDS = (
    "tokens_per_day",
    "tokens_per_month",
    "requests_per_day",
    "requests_per_minute",
    "concurrent_answers",
    "max_tokens_per_answer",
    "max_prompt_tokens",
)


@dataclass(frozen=True)
class EffectivePolicy:
    """The policy that applies to one user now; ``source`` says where it came from."""

    source: str
    all_models: bool = True
    model_names: frozenset[str] = frozenset()
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    requests_per_day: int | None = None
    requests_per_minute: int | None = None
    concurrent_answers: int | None = None
    max_tokens_per_answer: int | None = None
    max_prompt_tokens: int | None = None
    priority: int | None = None

    def allows(self, model: str) -> bool:
        """Return whether the policy lets its user use the served model ``model``."""
        return self.all_models or model in self.model_names

    def limits(self) -> dict[str, int | None]:
        """Return the limits by field name (None: unlimited)."""
        values: dict[str, int | None] = {name: getattr(self, name) for name in LIMIT_FIELDS}
        return values


_served_models: list[Callable[[], Iterable[str]]] = []


def set_served_models(provider: Callable[[], Iterable[str]]) -> None:
    """Install the callable that lists the served model names (inference calls this in ``ready()``)."""
    _served_models[:] = [provider]


def served_model_names() -> list[str]:
    """Return the names of the models the portal's engines serve, sorted (empty before ``ready()``)."""
    if not _served_models:
        return []
    return sorted(set(_served_models[0]()))


def check_models(all_models: bool, names: Any) -> None:
    """Refuse a model list that is not a list of served names.

    Raises ``ValidationError`` on the ``model_names`` field, listing the served names.
    """
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValidationError({"model_names": "Give a list of model names."})
    if all_models:
        return
    served = served_model_names()
    unknown = sorted(set(names) - set(served))
    if unknown:
        listed = ", ".join(served) if served else "none (no engine is configured)"
        raise ValidationError({"model_names": f"Unknown model {', '.join(unknown)}: the served models are {listed}."})


def site_default() -> EffectivePolicy:
    """Return the site default policy from the ``PORTAL_DEFAULT_POLICY_*`` settings."""
    configured: dict[str, Any] = settings.DEFAULT_POLICY
    names = frozenset(configured["model_names"])
    limits = {name: configured[name] for name in LIMIT_FIELDS}
    return EffectivePolicy(
        source="site default",
        all_models=not names,
        model_names=names,
        priority=configured["priority"],
        **limits,
    )


def from_policy(policy: Policy, source: str) -> EffectivePolicy:
    """Return the effective form of one stored policy."""
    return _from_row(tuple(getattr(policy, column) for column in _COLUMNS), source)


def most_generous(policies: list[EffectivePolicy], source: str) -> EffectivePolicy:
    """Merge policies field by field, keeping the most generous value of each (see the module)."""
    merged: dict[str, Any] = {"source": source}
    for name in LIMIT_FIELDS:
        values = [getattr(policy, name) for policy in policies]
        merged[name] = None if any(value is None for value in values) else max(values)
    merged["all_models"] = any(policy.all_models for policy in policies)
    merged["model_names"] = frozenset().union(*(policy.model_names for policy in policies))
    priorities = [policy.priority for policy in policies if policy.priority is not None]
    merged["priority"] = min(priorities) if priorities else None
    return EffectivePolicy(**merged)


# What effective_policy reads of a policy, and the group it came through ("" for an override).
_COLUMNS = ("name", "all_models", "model_names", *LIMIT_FIELDS, "priority")


def _assigned(user_id: int) -> list[tuple[Any, ...]]:
    """Return the user's override and group policies as rows of ``_COLUMNS`` + group name, in one query.

    One query, not two: this runs on every admission (see bench/admission.py).
    """
    columns = [f"policy__{column}" for column in _COLUMNS]
    override = UserPolicy.objects.filter(user_id=user_id).values_list(*columns, Value("", output_field=CharField()))
    groups = GroupPolicy.objects.filter(group__user=user_id).values_list(*columns, "group__name")
    # UNION ALL: PostgreSQL cannot compare json values, which plain UNION would need.
    return list(override.union(groups, all=True))


def _from_row(row: tuple[Any, ...], source: str) -> EffectivePolicy:
    values = dict(zip(_COLUMNS, row, strict=False))
    return EffectivePolicy(
        source=source,
        all_models=values["all_models"],
        model_names=frozenset(values["model_names"] or []),
        priority=values["priority"],
        **{name: values[name] for name in LIMIT_FIELDS},
    )


# Inside read_once(): the policies read so far, by user id (None outside: always read).
_read_in_this_request: ContextVar[dict[int, EffectivePolicy] | None] = ContextVar("policies_read", default=None)


@contextmanager
def read_once() -> Iterator[None]:
    """Within the block, read each user's effective policy from the database once.

    For one request's admission, which asks for the policy in several places (the
    parameters' ranges, the model check, the reservation): each ask was a query. The block
    is as short as the request, so a policy changed meanwhile applies from the next one.
    """
    token = _read_in_this_request.set({})
    try:
        yield
    finally:
        _read_in_this_request.reset(token)


def effective_policy(user: Any) -> EffectivePolicy:
    """Return the policy that applies to ``user``: override, else groups, else the site default."""
    read = _read_in_this_request.get()
    if read is None:
        return _effective_policy(user.pk)
    if user.pk not in read:
        read[user.pk] = _effective_policy(user.pk)
    return read[user.pk]


def _effective_policy(user_id: int) -> EffectivePolicy:
    rows = _assigned(user_id)
    for row in rows:
        if row[-1] == "":
            return _from_row(row, f"personal policy {row[0]!r}")
    if rows:
        rows.sort(key=lambda row: row[-1])
        groups = ", ".join(row[-1] for row in rows)
        return most_generous([_from_row(row, row[-1]) for row in rows], f"group policy of {groups}")
    return site_default()


def describe(policy: EffectivePolicy) -> dict[str, Any]:
    """Return the policy as the pages and ``quota show`` print it."""
    return {
        "source": policy.source,
        "models": "all" if policy.all_models else sorted(policy.model_names),
        **policy.limits(),
        "priority": policy.priority,
    }


def set_user_override(user: Any, actor: Any, **changes: Any) -> Policy:
    """Give ``user`` a personal policy: their current effective policy with ``changes`` applied.

    ``changes`` are limit fields, ``priority`` and ``model_names`` (a list; an empty list is
    refused, None means all models). Raises ``ValidationError`` naming the field for a
    negative or absurd value or an unknown model; nothing is saved then.
    """
    current = effective_policy(user)
    override = UserPolicy.objects.filter(user_id=user.pk).select_related("policy").first()
    policy = override.policy if override is not None else Policy(name=f"personal: {user.get_username()}")
    before = describe(current)
    if override is None:
        base = replace(current, source="")
        for item in fields(EffectivePolicy):
            if item.name in (*LIMIT_FIELDS, "priority"):
                setattr(policy, item.name, getattr(base, item.name))
        policy.all_models, policy.model_names = base.all_models, sorted(base.model_names)
    for name, value in changes.items():
        if name == "model_names":
            policy.all_models, policy.model_names = (True, []) if value is None else (False, value)
        elif name in (*LIMIT_FIELDS, "priority"):
            setattr(policy, name, value)
        else:
            raise ValueError(f"unknown policy field {name!r}")
    policy.full_clean()
    policy.save()
    UserPolicy.objects.update_or_create(user_id=user.pk, defaults={"policy": policy})
    record_quota_change(
        "policy.override", actor=actor, target=user, before=before, after=describe(from_policy(policy, ""))
    )
    return policy


def record_quota_change(action: str, *, actor: Any, target: Any, before: Any, after: Any, reason: str = "") -> None:
    """Write one audit event for a change of policies or usage, before and after, with the reason.

    Called for every policy created, changed or deleted in admin, every override set by
    ``quota set``, every manual adjustment and every ``quota reset``. Runs in the caller's
    transaction, so the change and its event commit together; the IP is the current request's
    when there is one (admin pages), none for the command line.
    """
    from portal.audit.trail import record_in_context

    data: dict[str, Any] = {"before": before, "after": after}
    if reason:
        data["reason"] = reason
    record_in_context(action, actor=actor, target=f"{type(target).__name__.lower()}:{target}", data=data)
