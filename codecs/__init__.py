"""Codec registry: every module in this package defines one :class:`~vecx.codecs.base.Codec`.

Adding a codec means adding one module here; nothing else changes. The registry
finds modules by listing the package, imports them (they import numpy lazily,
so this is cheap) and indexes the ``Codec`` subclasses by name.
"""

from __future__ import annotations

import importlib
import pkgutil

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
            module = importlib.import_module(f"{__name__}.{module_info.name}")
            for obj in vars(module).values():
                if isinstance(obj, type) and issubclass(obj, Codec) and obj.name and obj.__module__ == module.__name__:
                    if obj.name in found:
                        raise RuntimeError(f"two codecs named {obj.name!r}")
                    found[obj.name] = obj
        _registry = dict(sorted(found.items()))
    return _registry


def get_codec(name: str, where: str = "spec") -> type[Codec]:
    """Look up a codec class, with a did-you-mean hint for typos."""
    codecs = registry()
    if name not in codecs:
        raise SpecError(f"{where}: unknown codec {name!r}{suggest(name, list(codecs))}; "
                        f"known: {', '.join(codecs)}")
    return codecs[name]


def resolve_stage(stage: StageSpec, where: str, seed: int | None = None) -> tuple[type[Codec], dict]:
    """Find the codec for a parsed stage and resolve its parameters (``seed`` fills an unset seed)."""
    cls = get_codec(stage.name, where)
    return cls, cls.resolve(stage, where, {"seed": seed} if seed is not None else None)
