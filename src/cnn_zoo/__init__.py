"""cnn_zoo: reproducible, configurable convolutional-network experiments."""

from cnn_zoo.memory import keep_freed_memory, set_huge_page_default
from cnn_zoo.performance import set_openmp_defaults

__version__ = "0.1.0"

set_openmp_defaults()  # before anything imports torch: `python -m cnn_zoo.<entry>` loads this package first
set_huge_page_default()  # before torch's first large allocation, when it reads the setting
keep_freed_memory()
