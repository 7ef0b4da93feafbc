"""The prompt library's service: which templates a user sees and may change, and filling them in."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from prompt_library.models import VARIABLE, PromptTemplate


def visible_to(user: Any) -> QuerySet[PromptTemplate]:
    """Return the templates ``user`` may use: their own and those shared with the team."""
    return PromptTemplate.objects.filter(Q(owner_id=user.pk) | Q(shared=True)).select_related("owner")


def editable(user: Any, pk: int) -> PromptTemplate:
    """Return the user's own template ``pk``; raise ``Http404`` for anyone else's (shared or not)."""
    template = PromptTemplate.objects.filter(owner_id=user.pk, pk=pk).first()
    if template is None:
        raise Http404("No such template of yours.")
    return template


def fill(body: str, values: dict[str, str]) -> str:
    """Return ``body`` with each ``{{name}}`` replaced by ``values[name]``; unknown names stay as they are."""
    return VARIABLE.sub(lambda match: values.get(match.group(1), match.group(0)), body)


def as_json(template: PromptTemplate, user: Any) -> dict[str, Any]:
    """Return a template as the composer's "Insert template" dialog gets it."""
    return {
        "id": template.pk,
        "title": template.title,
        "body": template.body,
        "variables": template.variables(),
        "shared": template.shared,
        "owner": template.owner.get_username(),
        "mine": template.owner.pk == user.pk,
    }
