"""Encrypt the MFA secrets stored in plain text before accounts.mfa_adapter existed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import migrations

from accounts.mfa_adapter import SEALED_PREFIX, seal, unseal


def _rewrite(apps: Any, change: Callable[[str], str]) -> None:
    authenticator = apps.get_model("mfa", "Authenticator")
    for row in authenticator.objects.all():
        data = dict(row.data)
        for field in ("secret", "seed"):  # TOTP, recovery codes
            if isinstance(data.get(field), str):
                data[field] = change(data[field])
        if isinstance(data.get("migrated_codes"), list):
            data["migrated_codes"] = [change(code) for code in data["migrated_codes"]]
        if data != row.data:
            row.data = data
            row.save(update_fields=["data"])


def seal_plaintext(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, lambda text: text if text.startswith(SEALED_PREFIX) else seal(text))


def unseal_to_plaintext(apps: Any, schema_editor: Any) -> None:
    def change(text: str) -> str:
        plain = unseal(text)
        if plain is None and text.startswith(SEALED_PREFIX):
            raise RuntimeError("An MFA secret cannot be decrypted with this PORTAL_SECRET_KEY; restore the old key.")
        return text if plain is None else plain

    _rewrite(apps, change)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_password_change_required"),
        ("mfa", "0003_authenticator_type_uniq"),
    ]

    operations = [migrations.RunPython(seal_plaintext, unseal_to_plaintext)]
