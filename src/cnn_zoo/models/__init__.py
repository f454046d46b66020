"""Networks, one module per family; `build_net` turns a model config plus data facts into a module."""

from cnn_zoo.models.factory import build_net, num_outputs_for

__all__ = ["build_net", "num_outputs_for"]
