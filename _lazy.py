"""Import heavy modules on first use, so that ``vecx --help`` never pays for numpy or pyarrow."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """A stand-in that imports the real module on first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = None

    def _load(self) -> ModuleType:
        target = self.__dict__["_lazy_target"]
        if target is None:
            target = importlib.import_module(self.__name__)
            self.__dict__["_lazy_target"] = target
        return target

    def __getattr__(self, attr: str) -> Any:
        # Kept on the stand-in: the next look-up of the name is a plain module attribute, not a call
        # (hot loops read ``np.where`` and the like thousands of times a second).
        value = getattr(self._load(), attr)
        self.__dict__[attr] = value
        return value


def lazy(name: str) -> Any:
    """Return a lazily imported module (typed ``Any`` so callers use it like the module)."""
    return LazyModule(name)
