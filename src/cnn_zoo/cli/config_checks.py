"""Config values checked against the signature they are passed to, before the library meets them.

Lightning asserts on some wrong types deep inside `fit` (`trainer.max_epochs=abc` ends in an AssertionError), so
the trainer's values are compared with `Trainer.__init__`'s type hints first and a wrong one is one line.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from cnn_zoo.runtime.errors import CnnZooError

SIMPLE = (bool, int, float, str, type(None))


@cache
def simple_hints(function: Callable[..., Any]) -> dict[str, tuple[tuple[type, ...], tuple[Any, ...]]]:
    """Parameter -> (allowed plain types, allowed literal values), for parameters whose hint is only plain types."""
    out = {}
    for name, hint in typing.get_type_hints(function).items():
        kinds: list[type] = []
        literals: list[Any] = []
        pending, decidable = [hint], True
        while pending:
            item = pending.pop()
            origin = typing.get_origin(item)
            if origin in (typing.Union, types.UnionType):
                pending.extend(typing.get_args(item))
            elif origin is typing.Literal:
                literals.extend(typing.get_args(item))
            elif item in SIMPLE:
                kinds.append(item)
            else:  # a class (Accelerator, timedelta, ...) or a container: not decidable from a config value
                decidable = False
        if decidable:
            out[name] = (tuple(kinds), tuple(literals))
    return out


def accepts(value: Any, kinds: tuple[type, ...], literals: tuple[Any, ...]) -> bool:
    if value in literals and not (isinstance(value, bool) and bool not in kinds):
        return True
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and (int in kinds or float in kinds):
        return True
    return any(isinstance(value, kind) for kind in kinds if kind not in (bool, int))


def describe(kinds: tuple[type, ...], literals: tuple[Any, ...]) -> str:
    names = [{"NoneType": "null"}.get(k.__name__, k.__name__) for k in kinds]
    names += [repr(v) for v in literals]
    return " or ".join(dict.fromkeys(names))


def check_arguments(values: Mapping[str, Any], function: Callable[..., Any], prefix: str) -> None:
    """Every plain-typed parameter of `function` given in `values` has a value of its type, else one line."""
    hints = simple_hints(function)
    for key, value in values.items():
        if key not in hints or not isinstance(value, SIMPLE):
            continue
        kinds, literals = hints[key]
        if not accepts(value, kinds, literals):
            raise CnnZooError(f"{prefix}.{key} must be {describe(kinds, literals)}, got {value!r}")


def check_trainer_config(trainer_cfg: Mapping[str, Any]) -> None:
    import lightning as L

    check_arguments(trainer_cfg, L.Trainer.__init__, "trainer")
