"""DDP under Hydra: the extra processes re-run *this job*, into *this job's* folder, and are gone before the next.

Lightning's `strategy="ddp"` starts ranks 1..N-1 by re-running the command line. Its Hydra support passes
`hydra.run.dir=<hydra.run.dir>` and the original arguments, which is right for a single run but wrong for a
job of a sweep: the children would re-run the whole sweep (`-m`, or `hparams_search=...`) into a run folder of
their own. `HydraDDPStrategy` starts them instead with the job's own overrides, in RUN mode, writing into the
job's output folder without a `.hydra/` of their own (`hydra.output_subdir=null`); only rank zero writes files.

`release()`, which `cnn_zoo.search.job_cleanup.DistributedCleanup` (a Hydra callback, `conf/hydra/default.yaml`) calls
after each job, ends it cleanly: it waits for (or, after a failure, stops) the child processes, destroys the
process group and restores the DDP environment variables, so the next job of a multirun starts its own processes
instead of hanging on the previous job's group.
`ddp_spawn` would avoid the re-launch, but pickles the trainer, and Lightning recommends `ddp`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Any

import torch.distributed
from hydra.core.hydra_config import HydraConfig

from cnn_zoo.runtime.lightning_compat import LauncherChoosingDDPStrategy, ScriptLauncher, SubprocessScriptLauncher

log = logging.getLogger(__name__)

DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
_children: list[subprocess.Popen] = []  # processes this process started for the current job
_observed: list[list[subprocess.Popen]] = []  # the launchers' own lists, watched by Lightning's observer thread
_saved_env: dict[str, str | None] | None = None  # the DDP variables as they were before the job


def job_command(local_rank: int) -> tuple[list[str], str]:
    """The command that re-runs the current Hydra job (not the sweep) as rank `local_rank`, and its cwd."""
    import __main__

    hydra_cfg = HydraConfig.get()
    if getattr(__main__, "__spec__", None) is None:
        command = [sys.executable, os.path.abspath(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra_cfg.overrides.task)
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        "hydra.mode=RUN",
        "hydra.output_subdir=null",  # rank zero already saved the job's config
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",  # its own log file in the job folder
    ]
    return command, hydra_cfg.runtime.cwd


class HydraJobLauncher(ScriptLauncher):
    """Lightning's script launcher, starting the children with `job_command` inside a Hydra job."""

    def start_children(self) -> None:
        if not HydraConfig.initialized():
            super().start_children()
            return
        global _saved_env
        self.check_can_spawn_children()
        if _saved_env is None:
            _saved_env = {key: os.environ.get(key) for key in DDP_ENV}
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        self.procs = []
        for local_rank in range(1, self.num_processes):
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            if os.environ.get("PL_GLOBAL_SEED") is None:
                env.pop("PL_GLOBAL_SEED", None)
            command, cwd = job_command(local_rank)
            self.procs.append(subprocess.Popen(command, env=env, cwd=cwd))
        _children.extend(self.procs)
        _observed.append(self.procs)


class HydraDDPStrategy(LauncherChoosingDDPStrategy):
    """`DDPStrategy` whose extra processes re-run the current Hydra job (see the module's docstring)."""

    def choose_launcher(self, launcher: Any) -> Any:
        if type(launcher) is SubprocessScriptLauncher:
            return HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
        return launcher


def release(failed: bool = False, timeout: float = 120.0) -> None:
    """End the job's distributed state: children finished (or stopped), process group gone, environment restored."""
    global _saved_env
    for proc in _children:
        try:
            proc.wait(timeout=5 if failed else timeout)
        except subprocess.TimeoutExpired:
            log.warning("stopping DDP process %d, still running after the job ended", proc.pid)
            proc.kill()
            proc.wait()
    _children.clear()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if _saved_env is not None:
        for key, value in _saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _saved_env = None


def expect_ranks_to_stop() -> None:
    """The ranks are about to stop on a fault they agree on (divergence, a stop signal), with a non-zero status.

    why: Lightning's `_ChildProcessObserver` thread polls the launcher's `procs` every 5 s and SIGKILLs this
    process as soon as a child exited non-zero, which would cut rank zero off while it saves, writes metrics.json
    or prints the line. Emptying the list it watches (the launcher's own, in place) ends the thread at its next
    poll; `_children` keeps the processes, which `end_after_fault` waits for. Public replacement: none in 2.6.
    """
    for procs in _observed:
        procs.clear()
    _observed.clear()


def end_after_fault(timeout: float = 60.0) -> None:
    """Rank zero stops on a fault (divergence, a stop signal, a full disk): its process group goes first, so a rank
    still waiting in a collective gets an error at once instead of waiting for gloo's half-hour timeout; then the
    ranks it started get `timeout` seconds to finish their own exit (they met the same fault at the same step)
    before they are killed; no rank is left running after the command. The DDP variables are restored."""
    expect_ranks_to_stop()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if not _children:
        return
    deadline = time.monotonic() + timeout
    for proc in _children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("stopping DDP process %d, still running %.0f s after rank zero stopped", proc.pid, timeout)
            proc.kill()
            proc.wait()
    release(failed=True)
