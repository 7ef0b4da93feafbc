from __future__ import annotations

from typing import ClassVar

from django.db import models


class Note(models.Model):
    """A plugin's own model, with its own migration."""

    text = models.CharField(max_length=100)
    # Named, so type checks that run without the plugin installed still know it.
    objects: ClassVar[models.Manager[Note]] = models.Manager()

    def __str__(self) -> str:
        return self.text
