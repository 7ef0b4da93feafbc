"""The form of a template: a title, the text, and whether the team may use it."""

from __future__ import annotations

from typing import Any

from django import forms

from portal.plugins import plugin_settings
from prompt_library.models import PromptTemplate


class PromptTemplateForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = PromptTemplate
        fields = ["title", "body", "shared"]
        widgets = {"body": forms.Textarea(attrs={"rows": 10})}
        help_texts = {"body": "Write {{name}} where the user fills in a value when inserting it."}

    # Blank fields and NUL characters are refused by Django's form fields themselves; form
    # data arrives as UTF-8, so a lone surrogate cannot.
    def clean_body(self) -> str:
        body: str = self.cleaned_data["body"]
        limit = int(plugin_settings("prompt-library")["max_body_chars"])
        if len(body) > limit:
            raise forms.ValidationError(f"The text is longer than {limit} characters.")
        return body

    def save_for(self, user: Any) -> PromptTemplate:
        """Save the template with ``user`` as its owner (new) or keep its owner (edit)."""
        template: PromptTemplate = self.save(commit=False)
        if template.pk is None:
            template.owner = user
        template.save()
        return template
