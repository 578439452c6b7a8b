"""Lazy re-exports for package `__init__` modules (PEP 562): a package names its public objects
without importing the modules (and torch) behind them until one is used."""

import importlib
from collections.abc import Callable


def exports(package: str, names: dict[str, str]) -> tuple[Callable, Callable]:
    """`__getattr__` and `__dir__` for `package`, whose attribute NAME lives in module
    names[NAME] and is imported on first access."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name]), name)

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(names))

    return __getattr__, __dir__
