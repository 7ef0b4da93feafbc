"""The form a member fills in to create an API key."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from accounts.api_keys import MAX_EXPIRY_DAYS, MAX_NAME_CHARS


class ApiKeyForm(forms.Form):
    """Name, optional expiry in days, optional models (offered: the models engines serve)."""

    name = forms.CharField(max_length=MAX_NAME_CHARS, help_text="What the key is for, e.g. 'laptop notebook'.")
    expires = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_EXPIRY_DAYS, help_text="Days until it expires; empty: never."
    )
    models = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every model you may use."
    )

    def __init__(self, *args: Any, model_names: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.MultipleChoiceField, self.fields["models"]).choices = [(name, name) for name in model_names]
