"""cnn_zoo: reproducible, configurable convolutional-network experiments.

Importing it changes nothing in the process: the command-line entry points alone make their CPU settings
(`cnn_zoo.runtime.performance.tune_process`), so a notebook or another Hydra application beside cnn_zoo is left
as it was.
"""

__version__ = "0.1.0"
