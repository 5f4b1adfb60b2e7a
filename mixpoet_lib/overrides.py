"""Settings changed by dotted paths: the ``KEY=VALUE`` command-line text, its checked application to the
frozen settings dataclasses, and the folder name of a run with changed settings."""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from mixpoet_lib._util import digest

_PAIR_START = re.compile(r",\s*(?=[A-Za-z_][\w.]*\s*=)")  # a comma that starts the next KEY=


def parse_overrides(text: str | Iterable[str] | None) -> dict[str, Any]:
    """Parse ``"model.latent_size=64,train.ndis=5"`` (or several such strings) into ``{dotted key: value}``.

    Pairs are separated by commas (a comma inside a value such as ``[0.9,0.99]`` stays in it); each
    value is read as a JSON literal (``64``, ``0.5``, ``true``, ``null``, ``[1, 2]``, ``"text"``), else kept
    as a plain string. Empty text gives ``{}``. Keys are checked when the overrides are applied.
    """
    if text is None:
        return {}
    parts = [text] if isinstance(text, str) else list(text)
    out: dict[str, Any] = {}
    for part in parts:
        for pair in _PAIR_START.split(part.strip()):
            if not pair.strip():
                continue
            key, sep, raw = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"setting {pair.strip()!r} is not of the form KEY=VALUE (e.g. model.latent_size=64)")
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw.strip()
            out[key.strip()] = value
    return out


def run_name(name: str, overrides: str | Mapping[str, Any] | None = None) -> str:
    """The folder name of a run: the profile name, plus ``-<digest>`` of the overrides when there are some, so
    that a run with changed settings never overwrites the profile's own checkpoints, weights or reports."""
    wanted = parse_overrides(overrides) if isinstance(overrides, str) else dict(overrides or {})
    return f"{name}-{digest(wanted, 8)}" if wanted else name


def format_overrides(overrides: Mapping[str, Any]) -> str:
    """The inverse of :func:`parse_overrides`: ``{"train.ndis": 5}`` → ``"train.ndis=5"``."""
    return ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in overrides.items())


def apply_overrides(obj: Any, overrides: Mapping[str, Any], prefix: str = "") -> Any:
    """Return a copy of the settings dataclass ``obj`` (a Profile or one of its sections) with dotted keys set.

    A key names a field (``"ndis"``) or a path through nested settings (``"train.dae.batch_size"``); a
    mapping given for a nested settings field updates some of its fields. Values are checked against the
    field's type (ints for int fields, JSON lists become tuples, ...) and by the dataclasses' own checks.
    ``prefix`` is the path of ``obj`` itself, used in error messages.
    """
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, _, rest = str(key).partition(".")
        grouped.setdefault(head, {})[rest] = value  # rest "" = the field itself
    names = [f.name for f in dataclasses.fields(obj)]
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for head, sub in grouped.items():
        path = prefix + head
        if head not in names:
            where = repr(prefix[:-1]) if prefix else "a profile"
            raise ValueError(f"unknown setting {path!r}; {where} has {', '.join(names)}")
        current = getattr(obj, head)
        value = _coerce(path, hints[head], sub.pop("")) if "" in sub else _MISSING
        if dataclasses.is_dataclass(current):
            base = value if dataclasses.is_dataclass(value) else current
            if isinstance(value, Mapping):
                sub = {**value, **sub}
            value = apply_overrides(base, sub, path + ".") if sub else base
        elif sub:
            raise ValueError(f"setting {path!r} has no sub-settings (got {', '.join(path + '.' + k for k in sub)})")
        changes[head] = value
    return replace(obj, **changes)


_MISSING = object()


def _coerce(path: str, hint: Any, value: Any) -> Any:
    """Check ``value`` against a field's type hint; return it converted (int → float, list → tuple)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return None
        if isinstance(origin, type) and dataclasses.is_dataclass(origin) and isinstance(value, (origin, Mapping)):
            return value
        if origin is bool and isinstance(value, bool):
            return value
        if origin in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if origin is float:
                return float(value)
            if isinstance(value, int):
                return value
        if origin is str and isinstance(value, str):
            return value
        if origin is tuple and isinstance(value, (list, tuple)):
            item = (typing.get_args(option) or (Any,))[0]
            return tuple(
                float(v) if item is float and isinstance(v, int) and not isinstance(v, bool) else v for v in value
            )
    raise ValueError(f"setting {path!r} expects {hint.__name__ if isinstance(hint, type) else hint}, got {value!r}")
