"""Image folders of any size: memory, start-up time and loader rate with the decoded cache on disk (issue 37).

    python scripts/bench_image_cache.py --sizes 25000 100000 --root /work/bigfolder --ddp 4000
    python scripts/bench_image_cache.py --sizes 25000 100000 --root /work/bigfolder --warm-only --ddp 4000
    python scripts/bench_image_cache.py --sizes 4000 --root /tmp/bigfolder --steps 5   # a quick look

For each size N it builds `<root>/n<N>/{train,validation}/{cats,dogs}/` (80/20) from the 4,000 photos of
`$CNN_ZOO_DATA_DIR/cats_and_dogs_small`, as hard links (copies where linking is refused) under new names, outside
the repository; the decoded caches live in `<cache-dir>/n<N>` (default `<root>/cache`). Then, each in a fresh
process that makes the settings the `cnn-zoo-*` commands make (OpenMP's waiting, freed memory kept):
- a training run of `--steps` steps (small_cnn, 180x180, `data.cache=disk`), cold (its cache folder emptied
  first: the decode; skipped with `--warm-only` when the cache is there) and warm (the cache mapped): wall time
  and CPU seconds from the process's start to the first training step, peak resident memory (VmHWM; and its
  anonymous part, RssAnon, sampled) and the training steps' images/s;
- the training loader alone from the warm cache, 0 and 2 workers, without and with augmentation
  (flip_rotate_zoom in the workers; and `augmentation.device=accelerator`, here on the CPU): images per second
  of wall time, and per CPU second of the loading process and its workers together (the per-core rate, which
  other load on the machine does not lower);
- the model alone (`scripts/bench_loader.py`'s `model_rate`): training images/s on batches in memory;
- with `--ddp N`, a two-process `trainer=ddp_cpu` run on N photos with an empty cache folder: the
  number of processes that decoded (one) and that mapped.
Writes `<out>/image_cache.{md,json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["model=small_cnn", "optimizer=rmsprop", "data.batch_size=32", "data.image_size=180"]
QUIET = [
    "logger=none",
    "callbacks=none",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "+trainer.enable_checkpointing=false",
    "trainer.limit_val_batches=0",
    "+trainer.num_sanity_val_steps=0",
    "test=false",
]


# ---------------------------------------------------------------------- the folders
def build_folder(root: Path, size: int, photos: Path) -> Path:
    """`root/n<size>/{train,validation}/{cats,dogs}/<class>.<i>.jpg`, cycling through the source photos."""
    folder = root / f"n{size}"
    if (folder / "complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    sources = {name: sorted(photos.glob(f"*/{name}/*.jpg")) for name in ("cats", "dogs")}
    per_class = size // 2
    for name, files in sources.items():
        for i in range(per_class):
            split = "train" if i < int(per_class * 0.8) else "validation"
            target = folder / split / name / f"{name[:-1]}.{i}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(files[i % len(files)], target)
            except OSError:
                shutil.copyfile(files[i % len(files)], target)
    (folder / "complete").write_text(f"{size}\n")
    return folder


# ---------------------------------------------------------------------- child processes
def memory_sampler(pid: int, peak: dict[str, int], stop: threading.Event) -> None:
    """Peak RssAnon / RssFile / VmRSS (kB) of `pid`, every 0.1 s."""
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmRSS", "VmHWM"):
                    peak[key] = max(peak.get(key, 0), int(value.split()[0]))
        except (OSError, ValueError):
            pass
        stop.wait(0.1)


def child(mode: str, overrides: list[str], batches: int = 40) -> dict[str, Any]:
    """Run this script as `--child <mode>` in a fresh process; its result and the process's peak memory."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_file = Path(handle.name)
    started = time.time()
    command = [sys.executable, __file__, "--child", mode, "--result", str(result_file), "--started", str(started),
               "--batches", str(batches)]  # fmt: skip
    process = subprocess.Popen([*command, "--", *overrides], cwd=ROOT)
    peak: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=memory_sampler, args=(process.pid, peak, stop), daemon=True)
    sampler.start()
    code = process.wait()
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"child {mode} {' '.join(overrides)} failed with exit status {code}")
    result = json.loads(result_file.read_text())
    result_file.unlink()
    result["peak_rss_mb"] = round(max(peak.get("VmHWM", 0), result.get("vmhwm_kb", 0)) / 1024, 1)
    result["peak_anon_mb"] = round(peak.get("RssAnon", 0) / 1024, 1)
    result["peak_file_mb"] = round(peak.get("RssFile", 0) / 1024, 1)
    result["wall_s"] = round(time.time() - started, 1)
    return result


def own_vmhwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_training(overrides: list[str], started: float) -> dict[str, Any]:
    """A short training run; the time of its first step and its steps' images/s (in this process)."""
    import lightning as L

    from cnn_zoo.cli.config import compose_train_config
    from cnn_zoo.train import train

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.first: float | None = None
            self.first_cpu = 0.0
            self.times: list[float] = []
            self.images = 0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:
            now = time.time()
            if self.first is None:
                self.first, self.first_cpu = now, cpu_seconds()
            self.times.append(now)
            if len(self.times) > 2:
                self.images += len(batch[1])

    clock = Clock()
    cfg = compose_train_config(overrides, Path(tempfile.mkdtemp(prefix="bench_image_cache_")))
    train(cfg, extra_callbacks=[clock])
    steps = clock.times[2:]
    rate = clock.images / (steps[-1] - clock.times[1]) if len(steps) > 1 else float("nan")
    return {
        "first_step_s": round(clock.first - started, 1),
        "first_step_cpu_s": round(clock.first_cpu, 1),
        "train_images_per_s": round(rate, 1),
    }


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of this process (or of `pid`, from /proc)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(iterator: Any) -> list[int]:
    """The DataLoader worker processes behind an iterator (through the project's iterator wrappers)."""
    while not hasattr(iterator, "_workers") and hasattr(iterator, "iterator"):
        iterator = iterator.iterator
    return [worker.pid for worker in getattr(iterator, "_workers", [])]


def run_loader(overrides: list[str], batches: int) -> dict[str, Any]:
    """Training-loader images/s from the (warm) cache: workers 0 and 2; none / CPU / device augmentation."""
    import torch

    from cnn_zoo.cli.config import compose_train_config
    from cnn_zoo.training.pipeline import build_classifier, build_datamodule
    from scripts.bench_loader import model_rate

    rows = {}
    for name, extra in (
        ("none", ["augmentation=none"]),
        ("flip_rotate_zoom (cpu)", ["augmentation=flip_rotate_zoom"]),
        ("flip_rotate_zoom (device=cpu tensor)", ["augmentation=flip_rotate_zoom", "augmentation.device=accelerator"]),
    ):
        cfg = compose_train_config([*overrides, *extra], Path(tempfile.mkdtemp(prefix="bench_loader_")))
        torch.manual_seed(0)
        datamodule = build_datamodule(cfg)
        for workers in (0, 2):
            datamodule.num_workers = workers
            loader = datamodule.train_dataloader()
            iterator = iter(loader)
            for _ in range(5):  # workers started, the first rows read: not part of the steady rate
                next(iterator)
            pids = [os.getpid(), *worker_pids(iterator)]
            seen, start, cpu = 0, time.perf_counter(), sum(map(cpu_seconds, pids))
            for _ in range(batches):
                try:
                    batch = next(iterator)
                except StopIteration:  # a small folder: the next epoch (new workers: counted from here)
                    iterator = iter(loader)
                    batch = next(iterator)
                batch = datamodule.on_after_batch_transfer(batch, 0)  # the device half, here on the CPU
                seen += len(batch[0])
            wall, cpu = time.perf_counter() - start, sum(map(cpu_seconds, pids)) - cpu
            rows[f"{name}, {workers} workers"] = {
                "images_per_s": round(seen / wall, 1),
                "per_cpu_s": round(seen / max(cpu, 1e-9), 1),
                "cpu_s": round(cpu, 2),
                "wall_per_worker": round(seen / wall / max(1, workers), 1),
            }
            del iterator, loader  # its workers end before the next configuration's start
            print(name, workers, rows[f"{name}, {workers} workers"], flush=True)
        if name == "none":
            build_classifier(cfg, datamodule.spec)
            rows["model"] = {"images_per_s": round(model_rate(cfg, datamodule, 8), 1)}
    return rows


def child_main(args: argparse.Namespace) -> None:
    from cnn_zoo.runtime import memory, performance

    performance.set_openmp_defaults()  # what `cnn-zoo-train` sets before torch loads
    memory.keep_freed_memory()
    sys.path.insert(0, str(ROOT))
    if args.child == "train":
        result = run_training(args.overrides, args.started)
    else:
        result = run_loader(args.overrides, args.batches)
    result["vmhwm_kb"] = own_vmhwm()
    args.result.write_text(json.dumps(result))


# ---------------------------------------------------------------------- the table
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25000, 100000])
    parser.add_argument("--root", type=Path, default=Path("/work/bigfolder"))
    parser.add_argument("--steps", type=int, default=12, help="training steps per run")
    parser.add_argument("--batches", type=int, default=40, help="loader batches timed")
    parser.add_argument("--ddp", type=int, metavar="N", help="also a two-process ddp_cpu run on a folder of N photos")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks")
    parser.add_argument("--cache-dir", type=Path, help="where the decoded caches live (default: <root>/cache)")
    parser.add_argument(
        "--warm-only",
        action="store_true",
        help="keep the caches there are (no cold run where one is complete): the warm figures only",
    )
    parser.add_argument("--skip-loader", action="store_true", help="no loader / model rates")
    parser.add_argument("--child", choices=["train", "loader"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    photos = Path(os.environ.get("CNN_ZOO_DATA_DIR", "data")) / "cats_and_dogs_small"
    results: dict[str, Any] = {}
    cache_root = args.cache_dir or args.root / "cache"
    for size in args.sizes:
        folder = build_folder(args.root, size, photos)
        cache = cache_root / f"n{size}"
        warm_cache = len(list(cache.glob("decoded_images/*.json"))) >= 2  # train and validation manifests
        if not (args.warm_only and warm_cache):
            shutil.rmtree(cache, ignore_errors=True)
        data = ["data=image_folder", f"data.folder={folder}", "data.cache=disk", f"data.cache_dir={cache}"]
        training = [*data, *MODEL, *QUIET, "trainer=cpu", f"+trainer.max_steps={args.steps}"]
        row: dict[str, Any] = {}
        for state in ("warm",) if args.warm_only and warm_cache else ("cold", "warm"):
            row[state] = child("train", training)
            print(size, state, row[state], flush=True)
        if not args.skip_loader:
            loader = child("loader", [*data, *MODEL, "trainer=cpu"], args.batches)
            row["loader"] = {k: v for k, v in loader.items() if isinstance(v, dict)}
            row["loader_peak_rss_mb"] = loader["peak_rss_mb"]
        row["cache_gb"] = round(sum(p.stat().st_size for p in cache.rglob("*.u8")) / 2**30, 2)
        results[str(size)] = row
    if args.ddp:
        size = args.ddp
        folder = build_folder(args.root, size, photos)
        cache = cache_root / f"ddp-n{size}"
        shutil.rmtree(cache, ignore_errors=True)
        run = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
        command = [sys.executable, "-m", "cnn_zoo.train", "data=image_folder", f"data.folder={folder}",
                   "data.cache=disk", f"data.cache_dir={cache}", *MODEL, *QUIET, "trainer=ddp_cpu",
                   f"+trainer.max_steps={args.steps}", f"hydra.run.dir={run}"]  # fmt: skip
        started = time.time()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        logs = {path.name: path.read_text() for path in sorted(run.glob("train*.log"))}  # train.log, train_rank1.log
        results["ddp"] = {
            "exit": done.returncode,
            "wall_s": round(time.time() - started, 1),
            "per_rank": {
                name: {
                    "splits_decoded": text.count("images into the cache:"),
                    "splits_mapped": text.count("mapped from the decoded cache"),
                    "waited": text.count("waiting for another process decoding"),
                }
                for name, text in logs.items()
            },
        }
        print("ddp", results["ddp"], flush=True)
    report(args.out, results)


def report(out: Path, results: dict[str, Any]) -> None:
    from bench_common import machine

    load = os.getloadavg()
    lines = [f"Machine: {machine()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             "(1/5/15 min): other processes may have been loading its cores; CPU seconds are not lowered by them.",
             ""]  # fmt: skip
    lines += ["| photos | cache | first step: wall (s) | its CPU (s) | peak RSS (MB) | of it anonymous (MB) "
              "| train img/s |", "|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for size, row in results.items():
        if size == "ddp":
            continue
        for state in ("cold", "warm"):
            if state in row:
                r = row[state]
                lines.append(f"| {int(size):,} | {state} | {r['first_step_s']} | {r.get('first_step_cpu_s', '')} "
                             f"| {r['peak_rss_mb']} | {r['peak_anon_mb']} | {r['train_images_per_s']} |")  # fmt: skip
    lines += ["", "| photos | loader (warm cache) | images/s (wall) | images per CPU second (per core) | CPU s |",
              "|---:|---|---:|---:|---:|"]  # fmt: skip
    for size, row in results.items():
        if size == "ddp":
            continue
        for name, r in row.get("loader", {}).items():
            lines.append(f"| {int(size):,} | {name} | {r['images_per_s']} | {r.get('per_cpu_s', '')} "
                         f"| {r.get('cpu_s', '')} |")  # fmt: skip
    if "ddp" in results:
        ddp = results["ddp"]
        lines += ["", f"Two-process ddp_cpu run (exit {ddp['exit']}, {ddp['wall_s']} s), per rank's log: "
                  f"{json.dumps(ddp['per_rank'])}"]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "image_cache.md").write_text("\n".join(lines) + "\n")
    (out / "image_cache.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
