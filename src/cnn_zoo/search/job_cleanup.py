"""The Hydra callback that ends every job's distributed state, so a multirun's next job starts from a clean slate.

Hydra builds its callbacks as the run starts, before `train` sees the job's config. This module loads neither
torch nor Lightning, so torch still loads inside `train`, once the config has told the OpenMP choice how many
DataLoader workers the run starts (`cnn_zoo.runtime.performance.expect_loader_workers`). A job that never loaded torch
started no DDP processes and no process group: there is nothing to release.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class DistributedCleanup(Callback):
    """After each job: `cnn_zoo.runtime.distributed.release()` (children finished or stopped, process group gone)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if "torch" not in sys.modules:
            return
        from cnn_zoo.runtime.distributed import release

        release(failed=job_return.status != JobStatus.COMPLETED)
