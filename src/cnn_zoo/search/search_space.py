"""Hydra sweep overrides as Optuna distributions: the `params` of conf/hparams_search/*.yaml.

`choice(a, b)` -> categorical, `interval(lo, hi)` -> uniform floats, `tag(log, interval(...))`
-> log-uniform, `range(start, stop, step)` -> stepped (stop excluded, as in Hydra's grid sweeps), `shuffle(...)` ->
categorical. Anything else is a fixed override passed to every trial as written.
"""

from __future__ import annotations

import math
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from cnn_zoo.runtime.errors import CnnZooError


def choices_of(override: Override) -> list[Any]:
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    for value in values:
        if not isinstance(value, str | int | float | bool | type(None)):
            raise CnnZooError(f"{override.input_line}: a choice holds numbers, strings, booleans or null")
    return values


def distribution_of(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        assert isinstance(value, ChoiceSweep | RangeSweep)
        return CategoricalDistribution(choices_of(override))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step or 1
        if start is None or stop is None:
            raise CnnZooError(f"{override.input_line}: range() needs a start and a stop")
        count = math.ceil((stop - start) / step)
        if count < 1:
            raise CnnZooError(f"{override.input_line}: the range is empty")
        last = start + (count - 1) * step  # Hydra's range excludes stop; Optuna's distributions include high
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(start), int(last), step=int(step))
        return FloatDistribution(float(start), float(last), step=float(step))
    if isinstance(value, IntervalSweep):  # Hydra reads interval's ends as floats: integers come from range()
        return FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)
    raise CnnZooError(f"{override.input_line}: not a search parameter (choice, interval, range)")


def parse_search(arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """(search distributions, fixed overrides) from `key=value` strings; a later key wins over an earlier one."""
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = distribution_of(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return distributions, fixed


def grid_of(distributions: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """Every value of each distribution, for Optuna's GridSampler (discrete distributions only)."""
    grid: dict[str, list[Any]] = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            count = round((dist.high - dist.low) / dist.step) + 1
            grid[name] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise CnnZooError(f"the grid sampler needs choice() or range() for {name}, not a continuous interval")
    return grid


def suggest(trial: Any, name: str, dist: BaseDistribution) -> Any:
    """The trial's value for `name` through Optuna's public suggest API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
