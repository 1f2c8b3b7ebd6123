"""Codec registry: every module in this package defines one :class:`~vecx.codecs.base.Codec`.

Adding a codec means adding one module here; nothing else changes. The registry
finds modules by listing the package, imports them (they import numpy lazily,
so this is cheap) and indexes the ``Codec`` subclasses by name.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from vecx.codecs.base import Codec
from vecx.errors import SpecError
from vecx.spec import StageSpec, suggest

_registry: dict[str, type[Codec]] | None = None


def registry() -> dict[str, type[Codec]]:
    """All codecs by name, in name order."""
    global _registry
    if _registry is None:
        found: dict[str, type[Codec]] = {}
        for module_info in pkgutil.iter_modules(__path__):
            if module_info.name.startswith("_") or module_info.name == "base":
                continue
            for cls in _codecs_of(importlib.import_module(f"{__name__}.{module_info.name}")):
                if cls.name in found:
                    raise RuntimeError(f"two codecs named {cls.name!r}")
                found[cls.name] = cls
        _registry = dict(sorted(found.items()))
    return _registry


def _codecs_of(module: ModuleType) -> list[type[Codec]]:
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, Codec) and obj.name and obj.__module__ == module.__name__]


def _by_module_name(name: str) -> type[Codec] | None:
    """The codec ``name`` from the module of the same name, without importing the others.

    A query opens one or two codecs; importing all of them is a noticeable part of its start-up.
    """
    if not name.isidentifier() or name.startswith("_") or name == "base":
        return None
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        return None
    return next((cls for cls in _codecs_of(module) if cls.name == name), None)


def get_codec(name: str, where: str = "spec") -> type[Codec]:
    """Look up a codec class, with a did-you-mean hint for typos."""
    if _registry is None:
        found = _by_module_name(name)
        if found is not None:
            return found
    codecs = registry()
    if name not in codecs:
        raise SpecError(f"{where}: unknown codec {name!r}{suggest(name, list(codecs))}; "
                        f"known: {', '.join(codecs)}")
    return codecs[name]


def resolve_stage(stage: StageSpec, where: str, seed: int | None = None) -> tuple[type[Codec], dict]:
    """Find the codec for a parsed stage and resolve its parameters (``seed`` fills an unset seed)."""
    cls = get_codec(stage.name, where)
    return cls, cls.resolve(stage, where, {"seed": seed} if seed is not None else None)
