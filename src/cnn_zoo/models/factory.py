"""Build a network from its config and the data spec: each network class declares the data inputs it takes.

A network class lists, in `data_inputs`, the names of `DataSpec.network_inputs()` its constructor takes
(`num_outputs`, `in_channels`, `input_size`, `input_shape`, `vocab_size`, `normalization`,
`train_augmentation`); only those are passed, so a data setting never lands in a network argument that
happens to share its name. Values set explicitly in the model config win.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hydra.utils
from hydra.errors import InstantiationException
from torch import nn

from cnn_zoo.data.spec import DataSpec, num_outputs_for
from cnn_zoo.runtime.errors import CnnZooError


def available_inputs(data: DataSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The named inputs a spec offers; a plain mapping is taken as those inputs (with `num_classes`)."""
    if isinstance(data, DataSpec):
        return data.network_inputs()
    inputs = dict(data)
    inputs.setdefault("num_outputs", num_outputs_for(int(inputs["num_classes"])))
    return inputs


def build_net(net_config: dict[str, Any], data: DataSpec | Mapping[str, Any]) -> nn.Module:
    """Instantiate `net_config`, passing the data inputs its class declares in `data_inputs`."""
    target = net_config.get("_target_")
    if not target:
        raise CnnZooError("model.net needs a _target_ naming the network class")
    try:
        factory = hydra.utils.get_object(target)
    except Exception as err:
        raise CnnZooError(f"model.net._target_={target!r} cannot be imported: {err}") from err
    declared = getattr(factory, "data_inputs", None)
    if declared is None:
        raise CnnZooError(
            f"{target} does not declare the data inputs it takes: give the class "
            "`data_inputs = (\"num_outputs\", \"in_channels\", ...)` (see cnn_zoo.data.spec.DataSpec.network_inputs)"
        )
    inputs = available_inputs(data)
    # an input this kind of data lacks (text has no in_channels) is left to the network's default and checks
    extra = {name: inputs[name] for name in declared if name in inputs and name not in net_config}
    try:
        return hydra.utils.instantiate(net_config, **extra, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ if isinstance(err.__cause__, CnnZooError) else None
        if cause is not None:
            raise cause from None
        raise CnnZooError(f"cannot build model.net ({target}): {err.__cause__ or err}") from err
