"""Networks, one module per family; `build_net` turns a model config plus the data spec into a module."""

from cnn_zoo.models.factory import build_net

__all__ = ["build_net"]
