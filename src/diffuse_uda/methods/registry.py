"""Method registry: ``diffuse-uda train --method NAME`` looks names up here."""

from __future__ import annotations

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
    # Importing the modules runs their @register decorators.
    from diffuse_uda.methods import (  # noqa: F401
        ad,
        asc,
        cutmix,
        fda,
        glua,
        mean_teacher,
        pseudo_label,
        source_only,
        source_only_dg,
        target_supervised,
    )


def available_methods() -> dict[str, type[Method]]:
    _load_all()
    return dict(sorted(METHODS.items()))


def create_method(name: str, options: dict[str, Any] | None = None) -> Method:
    methods = available_methods()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(methods)}")
    return methods[name](options)
