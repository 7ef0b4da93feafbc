"""``manage.py startplugin``'s work: a new plugin package from the skeleton in ``skeleton/``.

The skeleton's files carry four placeholders, replaced as plain text (so that Django
template syntax in the skeleton's own templates stays as it is): ``__SLUG__``,
``__MODULE__``, ``__CLASS__``, ``__TITLE__``, plus the portal's version. A file or folder
named ``__MODULE__`` is renamed, and a ``-tpl`` suffix is dropped (it keeps the skeleton's
Python files out of the portal's own lint and test runs).
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from packaging.version import Version

from portal import __version__
from portal.plugins.config import SLUG_PATTERN

SKELETON = Path(__file__).resolve().parent / "skeleton"


class SkeletonError(ValueError):
    """The plugin cannot be made: a bad name, a taken module name or an existing folder."""


def names_for(name: str) -> dict[str, str]:
    """Return the placeholders' values for a plugin called ``name`` (e.g. ``team-notes``).

    Raises :class:`SkeletonError` for a name that is not a valid slug or whose module name
    is already importable (it would shadow, or be shadowed by, that module).
    """
    slug = name.strip().lower().replace("_", "-")
    if not SLUG_PATTERN.match(slug) or slug.endswith("-") or "--" in slug:
        raise SkeletonError(f"{name!r} is not a plugin name: use lower-case letters, digits and dashes, a letter first")
    module = slug.replace("-", "_")
    if importlib.util.find_spec(module) is not None:
        raise SkeletonError(f"a module named {module!r} exists already; choose another name")
    release = Version(__version__).release
    return {
        "__SLUG__": slug,
        "__MODULE__": module,
        "__CLASS__": "".join(part.capitalize() for part in slug.split("-")),
        "__TITLE__": " ".join(slug.split("-")).capitalize(),
        "__PORTAL_VERSION__": ".".join(str(part) for part in release[:2]),
        "__PORTAL_SERIES__": ".".join(str(part) for part in release[:2]),
    }


def write_plugin(name: str, directory: Path) -> Path:
    """Write a new plugin package for ``name`` into ``directory/<slug>`` and return that path.

    Nothing is written unless all of it can be: the package is made in a temporary folder
    next to the target and moved into place at the end. Raises :class:`SkeletonError` when
    the name is refused or the target exists.
    """
    values = names_for(name)
    target = directory / values["__SLUG__"]
    if target.exists():
        raise SkeletonError(f"{target} exists already")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".startplugin-") as scratch:
        made = Path(scratch) / values["__SLUG__"]
        for source in sorted(SKELETON.rglob("*")):
            if source.is_dir() or "__pycache__" in source.parts:
                continue
            relative = str(source.relative_to(SKELETON)).replace("__MODULE__", values["__MODULE__"])
            destination = made / relative.removesuffix("-tpl")
            destination.parent.mkdir(parents=True, exist_ok=True)
            text = source.read_text(encoding="utf-8")
            for placeholder, value in values.items():
                text = text.replace(placeholder, value)
            destination.write_text(text, encoding="utf-8")
        shutil.move(str(made), target)
    return target
