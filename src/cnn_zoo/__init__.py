"""cnn_zoo: reproducible, configurable convolutional-network experiments."""

__version__ = "0.1.0"
