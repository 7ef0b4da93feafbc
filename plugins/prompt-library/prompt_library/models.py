"""A prompt template: text with ``{{variables}}``, private to its owner or shared with the team."""

from __future__ import annotations

import re
from typing import ClassVar

from django.conf import settings
from django.db import models

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PromptTemplate(models.Model):
    """A reusable prompt; ``shared`` ones are seen (not edited) by every member of the team."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=200)
    body = models.TextField()
    shared = models.BooleanField(default=True, help_text="Everyone on the team can use a shared template.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[models.Manager[PromptTemplate]] = models.Manager()

    class Meta:
        ordering = ["title", "pk"]

    def __str__(self) -> str:
        return self.title

    def variables(self) -> list[str]:
        """Return the names of the template's variables, each once, in order of appearance."""
        return list(dict.fromkeys(VARIABLE.findall(self.body)))
