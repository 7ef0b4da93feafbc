"""Register and remove external engines: vLLM servers (or gateways) the portal routes to but does not run.

Used by ``manage.py engine add-external`` / ``engine remove``. Only people with the
power to run management commands or the Django admin (admins) reach this; the addresses
allowed can further be limited with ``PORTAL_EXTERNAL_ENGINE_ALLOWED``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from inference.engine_secrets import EngineKeyError, encrypt_api_key, read_key_file
from inference.models import SERVED_NAME_VALIDATOR, EngineConfig


class ExternalEngineRefused(Exception):
    """The registration or removal was refused; ``message`` says why and what to change."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def normalize_url(url: str) -> str:
    """Return the engine's base URL (scheme, host, port, path without a trailing ``/`` or ``/v1``).

    Raises :class:`ExternalEngineRefused` for anything but a plain http(s) URL with a host.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ExternalEngineRefused(f"{url!r} is not a URL: {exc}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExternalEngineRefused(f"{url!r} is not an http:// or https:// URL with a host.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ExternalEngineRefused("Give the URL without user, password, query or fragment; the key goes apart.")
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v1")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{path}"


def address_allowed(url: str, patterns: list[str] | None = None) -> bool:
    """True when the host of ``url`` matches ``PORTAL_EXTERNAL_ENGINE_ALLOWED`` (empty: every host).

    A host name matches a name or ``*.domain`` pattern; an IP address, or every address a
    host name resolves to, must lie in one of the networks.
    """
    patterns = settings.EXTERNAL_ENGINE_ALLOWED if patterns is None else patterns
    if not patterns:
        return True
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    networks = [ipaddress.ip_network(item) for item in patterns if "/" in item]
    names = [item for item in patterns if "/" not in item]
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        return any(literal in network for network in networks)
    if any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in names):
        return True
    if not networks:
        return False
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(
        any(ipaddress.ip_address(address.split("%")[0]) in network for network in networks) for address in addresses
    )


def check_ca_bundle(path: str) -> str:
    """Return ``path`` when it is a readable PEM bundle of CA certificates; raise otherwise."""
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ExternalEngineRefused(f"The CA bundle {path} cannot be used: {exc}.") from None
    return path


@dataclass(frozen=True)
class ExternalSpec:
    """What an operator gives to register an external engine."""

    name: str
    url: str
    api_key: str = ""  # given directly (the admin page); the command line reads it from a file
    api_key_file: str = ""
    keep_key_in_file: bool = False
    ca_bundle: str = ""
    models: tuple[str, ...] = ()


def register_external(spec: ExternalSpec, *, replace: bool = False) -> EngineConfig:
    """Create (or with ``replace`` update) the external engine ``spec.name``.

    The key (given, or read now from the key file) is stored encrypted, unless
    ``keep_key_in_file`` (then the file is read at every use, on each host). Raises :class:`ExternalEngineRefused`: bad
    name, URL, address not allowed, unreadable key file or CA bundle, bad model name, a taken
    name without ``replace``, or a managed engine of that name. Nothing is written then.
    """
    url = normalize_url(spec.url)
    if not address_allowed(url):
        raise ExternalEngineRefused(
            f"{urlsplit(url).hostname} is not allowed by PORTAL_EXTERNAL_ENGINE_ALLOWED "
            f"({', '.join(settings.EXTERNAL_ENGINE_ALLOWED)})."
        )
    encrypted = ""
    try:
        if spec.api_key:
            encrypted = encrypt_api_key(spec.api_key)
        elif spec.api_key_file:
            key = read_key_file(spec.api_key_file)
            encrypted = "" if spec.keep_key_in_file else encrypt_api_key(key)
    except EngineKeyError as exc:
        raise ExternalEngineRefused(exc.message) from None
    ca_bundle = check_ca_bundle(spec.ca_bundle) if spec.ca_bundle else ""
    for model in spec.models:
        try:
            SERVED_NAME_VALIDATOR(model)
        except ValidationError:
            raise ExternalEngineRefused(f"{model!r} is not a model name: {SERVED_NAME_VALIDATOR.message}") from None
    with transaction.atomic():
        config = EngineConfig.objects.select_for_update().filter(name=spec.name).first()
        if config is not None and not config.is_external:
            raise ExternalEngineRefused(f"{spec.name} is a managed engine; choose another name.")
        if config is not None and not replace:
            raise ExternalEngineRefused(f"An engine named {spec.name} exists; --replace updates it.")
        config = config or EngineConfig(name=spec.name, kind=EngineConfig.Kind.EXTERNAL)
        config.url = url
        config.api_key_encrypted = encrypted
        config.api_key_file = spec.api_key_file if spec.keep_key_in_file else ""
        config.ca_bundle = ca_bundle
        config.pinned_models = list(dict.fromkeys(spec.models))
        config.served_model_name = spec.models[0] if spec.models else ""
        config.model = url
        config.desired_state = EngineConfig.Desired.RUNNING
        try:
            config.full_clean(exclude=["model"])
        except ValidationError as exc:
            raise ExternalEngineRefused(" ".join(exc.messages)) from None
        config.save()
    return config


def remove_engine(name: str) -> None:
    """Delete the engine ``name`` (its state and samples go with it).

    Raises :class:`ExternalEngineRefused` when there is none, or when it is a managed engine
    that is still wanted running (stop it first: its supervisor then ends the process).
    """
    config = EngineConfig.objects.filter(name=name).first()
    if config is None:
        raise ExternalEngineRefused(f"No engine named {name!r}.")
    if not config.is_external and config.desired_state == EngineConfig.Desired.RUNNING:
        raise ExternalEngineRefused(f"{name} is a managed engine that should run: `engine stop {name}` first.")
    config.delete()
