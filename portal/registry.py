"""The registry the apps (and later plugins) fill in ``AppConfig.ready()``.

Modelled on NetBox's ``registry.py``: a dict with a fixed set of keys ("stores"). The portal
reads the stores (the navigation bar, /readyz, ``manage.py doctor``, the WebSocket router,
the URL conf, the home page) and so never has to import an app.

Two rules keep it predictable:

- The keys are fixed when the registry is made: ``registry["new"] = ...`` and ``del`` raise
  ``TypeError``, and an unknown key is a ``KeyError`` that names the known ones.
- The stores are filled during start-up only. :meth:`Registry.add` and :meth:`Registry.put`
  raise :class:`RegistryClosed` once every ``ready()`` has run (Django's ``apps.ready``), and
  the stores themselves are immutable (tuples and read-only mappings), so nothing can slip
  an entry in later by mutating what it read.

Stores and what their entries are:

=====================  ==========  ====================================================
key                    kind        entry
=====================  ==========  ====================================================
``nav_items``          sequence    ``portal.navigation.NavItem``
``readiness_checks``   mapping     name -> ``() -> dict`` with at least ``ok`` (/readyz)
``doctor_checks``      sequence    ``() -> Finding | Iterator[Finding]`` (``manage.py doctor``)
``sso_checks``         sequence    ``(user: str | None) -> Iterator[Finding]`` (``manage.py doctor --sso``)
``websocket_routes``   sequence    a Channels URL pattern (``path("ws/...", Consumer.as_asgi())``)
``url_mounts``         sequence    ``portal.registry.UrlMount`` (prefix and URL conf module)
``hooks``              mapping     hook name -> ordered hook entries (see ``portal.hooks``)
``dashboard_widgets``  sequence    ``portal.registry.DashboardWidget`` (home page)
``role_checks``        mapping     role name -> ``(user) -> bool`` (see ``portal.access``)
``redactors``          sequence    a redactor for the audit trail (issue 9)
``plugins``            mapping     plugin slug -> its app config (issue 11)
=====================  ==========  ====================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn

SEQUENCE_STORES = (
    "nav_items",
    "doctor_checks",
    "sso_checks",
    "websocket_routes",
    "url_mounts",
    "dashboard_widgets",
    "redactors",
)
MAPPING_STORES = ("readiness_checks", "hooks", "role_checks", "plugins")


class RegistryClosed(RuntimeError):
    """A store was changed after start-up; register in ``AppConfig.ready()`` instead."""


@dataclass(frozen=True)
class UrlMount:
    """An app's URL conf, mounted by ``portal/urls.py`` under ``prefix`` (e.g. ``"chat/"``).

    With a ``namespace`` the URL names are reversed as ``"<namespace>:<name>"`` (plugins
    get their slug), whatever ``app_name`` the URL conf sets.
    """

    prefix: str
    urlconf: str
    namespace: str | None = None


@dataclass(frozen=True)
class DashboardWidget:
    """A piece of the home page: ``template`` rendered with ``context(request)``, by ``order``.

    Shown to users for whom ``visible(user)`` is true (everyone by default).
    """

    template: str
    context: Callable[[Any], dict[str, Any]] = field(default=lambda request: {})
    order: int = 100
    visible: Callable[[Any], bool] = field(default=lambda user: True)


def _apps_ready() -> bool:
    from django.apps import apps

    return apps.ready


class Registry(dict[str, Any]):
    """The stores by key; the keys are fixed and the stores close when start-up ends.

    ``started`` says whether start-up is over (by default: every app's ``ready()`` ran).
    """

    def __init__(self, started: Callable[[], bool] = _apps_ready) -> None:
        super().__init__()
        for key in SEQUENCE_STORES:
            super().__setitem__(key, ())
        for key in MAPPING_STORES:
            super().__setitem__(key, MappingProxyType({}))
        self._started = started

    def __getitem__(self, key: str) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            raise KeyError(f"{key!r} is not a registry key; the keys are: {', '.join(self)}") from None

    def __setitem__(self, key: str, value: Any) -> NoReturn:
        raise TypeError(f"The registry's keys are fixed; use registry.add() or registry.put() to fill {key!r}.")

    def __delitem__(self, key: str) -> NoReturn:
        raise TypeError("The registry's keys are fixed; they cannot be deleted.")

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("The registry's keys are fixed.")

    update = setdefault = pop = popitem = clear = __ior__ = _refuse

    def add(self, key: str, entry: Any) -> None:
        """Append ``entry`` to the sequence store ``key``.

        Raises ``KeyError`` for an unknown key, ``TypeError`` for a mapping store and
        :class:`RegistryClosed` after start-up.
        """
        self._check_open(key, SEQUENCE_STORES, "add")
        super().__setitem__(key, (*self[key], entry))

    def put(self, key: str, name: str, entry: Any) -> None:
        """Set ``name`` to ``entry`` in the mapping store ``key``.

        Raises ``KeyError`` for an unknown key, ``TypeError`` for a sequence store, ``ValueError``
        when ``name`` is taken and :class:`RegistryClosed` after start-up.
        """
        self._check_open(key, MAPPING_STORES, "put")
        if name in self[key]:
            raise ValueError(f"{name!r} is already registered in {key!r}.")
        self.replace(key, {**self[key], name: entry})

    def replace(self, key: str, value: Any) -> None:
        """Swap a whole store (as an immutable copy), even after start-up.

        Only for the modules that own a store's shape and for tests (``portal.hooks`` uses it
        for ``register_temporarily``); apps use :meth:`add` and :meth:`put`.
        """
        self[key]  # an unknown key is a KeyError
        frozen = MappingProxyType(dict(value)) if key in MAPPING_STORES else tuple(value)
        super().__setitem__(key, frozen)

    def started(self) -> bool:
        """True once start-up is over and the stores are closed to :meth:`add` and :meth:`put`."""
        return self._started()

    def _check_open(self, key: str, kinds: tuple[str, ...], verb: str) -> None:
        self[key]  # an unknown key is a KeyError
        if key not in kinds:
            other = "put(key, name, entry)" if verb == "add" else "add(key, entry)"
            raise TypeError(f"{key!r} is a {'mapping' if verb == 'add' else 'sequence'} store: use registry.{other}.")
        if self.started():
            raise RegistryClosed(f"Start-up is over: {key!r} is filled in AppConfig.ready() only.")


registry = Registry()
