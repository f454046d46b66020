"""Build a network from its config and the datamodule's facts (one path for every model)."""

from __future__ import annotations

import inspect
from typing import Any

import hydra.utils
from hydra.errors import InstantiationException
from torch import nn

from cnn_zoo.errors import CnnZooError


def num_outputs_for(num_classes: int) -> int:
    """Two classes are one logit (binary cross-entropy), as in the course; more get one logit each."""
    return 1 if num_classes == 2 else num_classes


def build_net(net_config: dict[str, Any], facts: dict[str, Any]) -> nn.Module:
    """Instantiate `net_config`, passing those data facts its constructor names.

    The facts (in_channels, input_size, vocab_size, ...) come from the data, so one model config
    works across datasets; values set explicitly in the config win.
    """
    target = net_config.get("_target_")
    if not target:
        raise CnnZooError("model.net needs a _target_ naming the network class")
    try:
        factory = hydra.utils.get_object(target)
    except Exception as err:
        raise CnnZooError(f"model.net._target_={target!r} cannot be imported: {err}") from err
    available = dict(facts)
    available["num_outputs"] = num_outputs_for(int(facts["num_classes"]))
    accepted = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    extra = {k: v for k, v in available.items() if (takes_any or k in accepted) and k not in net_config}
    try:
        return hydra.utils.instantiate(net_config, **extra, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ if isinstance(err.__cause__, CnnZooError) else None
        if cause is not None:
            raise cause from None
        raise CnnZooError(f"cannot build model.net ({target}): {err.__cause__ or err}") from err
