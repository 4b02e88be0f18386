"""Building the frozen config dataclasses from plain dicts (JSON config files, argparse overrides)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """Builds a frozen config dataclass from a dict, recursively, rejecting unknown keys.

    Nested dataclass fields accept a dict (or an instance); lists become tuples so the config stays hashable.
    Keys that are absent keep the dataclass default.

    Args:
        cls: a dataclass type, e.g. ``CurationConfig`` or ``GopherQualityConfig``.
        data: field name -> value; None or {} gives the defaults.

    Returns:
        An instance of ``cls``.

    Raises:
        ValueError: a key is not a field of ``cls`` (the message lists the allowed keys), or a nested value has
            the wrong type.

    Example:
        >>> from udfs.curation.filters import GopherQualityConfig
        >>> config_from_dict(GopherQualityConfig, {"min_doc_words": 20}).min_doc_words
        20
    """
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"{cls!r} is not a dataclass; pass the config class, e.g. CurationConfig")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown keys for {cls.__name__}: {unknown}; allowed keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints.get(name), value, f"{cls.__name__}.{name}")
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Returns a JSON-ready dict of a config (nested configs become dicts, tuples become lists).

    Args:
        cfg: a config dataclass instance.

    Returns:
        A dict that ``config_from_dict(type(cfg), ...)`` turns back into an equal config.
    """

    def _plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [_plain(x) for x in v]
        return v

    return {k: _plain(v) for k, v in dataclasses.asdict(cfg).items()}


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Turns a JSON value into what the field expects: nested dataclass from a dict, tuple from a list."""
    nested = _dataclass_in(hint)
    if nested is not None and isinstance(value, Mapping):
        return config_from_dict(nested, value)
    if nested is not None and not isinstance(value, nested) and value is not None:
        raise ValueError(f"{where} expects a dict or {nested.__name__}, got {type(value).__name__}")
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type named by a (possibly Optional) type hint, else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None
