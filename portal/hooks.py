"""Named hooks: functions the apps and plugins register for the portal to call at set points.

Modelled on Wagtail's ``hooks.py``. A hook is registered under a name in an app's
``AppConfig.ready()`` (the names are listed in docs/architecture.md; ``inference.before_generate``
and ``inference.after_generate`` are the first ones planned) and called by whoever owns that
point through :func:`get_hooks`, in ascending ``order`` and, for equal orders, in the order of
registration. The entries live in the registry's ``hooks`` store.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from portal.registry import RegistryClosed, registry

Hook = Callable[..., Any]
F = TypeVar("F", bound=Hook)

# Breaks ties between equal orders: registration order, also across register_temporarily.
_sequence = itertools.count()


@dataclass(frozen=True)
class HookEntry:
    """One registered function of a hook name."""

    fn: Hook
    order: int
    sequence: int


@overload
def register(name: str, fn: None = None, *, order: int = 0) -> Callable[[F], F]: ...
@overload
def register(name: str, fn: F, *, order: int = 0) -> F: ...
def register(name: str, fn: Hook | None = None, *, order: int = 0) -> Hook:
    """Register ``fn`` under ``name``; without ``fn``, return a decorator that does.

    Lower ``order`` runs first. Raises :class:`portal.registry.RegistryClosed` after start-up
    (register in ``ready()``; tests use :func:`register_temporarily`).
    """
    if fn is None:

        def decorator(function: F) -> F:
            register(name, function, order=order)
            return function

        return decorator
    if registry.started():
        raise RegistryClosed(f"Start-up is over: register the {name!r} hook in AppConfig.ready().")
    _add(HookEntry(fn, order, next(_sequence)), name)
    return fn


def get_hooks(name: str) -> list[Hook]:
    """Return the functions registered under ``name``, lowest order first (none: empty list)."""
    entries: tuple[HookEntry, ...] = registry["hooks"].get(name, ())
    return [entry.fn for entry in sorted(entries, key=lambda entry: (entry.order, entry.sequence))]


@contextmanager
def register_temporarily(name: str, fn: Hook, *, order: int = 0) -> Iterator[Hook]:
    """Register ``fn`` under ``name`` for the ``with`` block only (for tests; works after start-up)."""
    entry = HookEntry(fn, order, next(_sequence))
    _add(entry, name)
    try:
        yield fn
    finally:
        hooks = dict(registry["hooks"])
        remaining = tuple(item for item in hooks.get(name, ()) if item is not entry)
        if remaining:
            hooks[name] = remaining
        else:
            hooks.pop(name, None)
        registry.replace("hooks", hooks)


def _add(entry: HookEntry, name: str) -> None:
    hooks = registry["hooks"]
    registry.replace("hooks", {**hooks, name: (*hooks.get(name, ()), entry)})
