"""Method registry: ``diffuse-uda train --method NAME`` looks names up here."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.base import Method

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    METHODS[cls.name] = cls
    return cls


def _load_all() -> None:
    """Import every module of this package: their @register decorators fill METHODS, so adding a
    method is adding one file (heal is a source-free adaptation, not a trained method: it registers nothing)."""
    import diffuse_uda.methods as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


def available_methods() -> dict[str, type[Method]]:
    _load_all()
    return dict(sorted(METHODS.items()))


def create_method(name: str, options: dict[str, Any] | None = None) -> Method:
    methods = available_methods()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(methods)}")
    return methods[name](options)
