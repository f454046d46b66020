"""Generators for the transfer-learning tests: pretrained-weight files in the libraries' layouts, a phase recorder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

# A small ResNet keeps training tests fast; the schedule, caching and loading code is the same as ResNet50's.
TINY = ["model.net.arch=resnet18", "model.net.weights=null"]


def library_state(arch: str, source: str, seed: int = 0, **kwargs: Any) -> dict[str, torch.Tensor]:
    """The full state dict (classifier included) of a freshly initialised torchvision or timm model."""
    torch.manual_seed(seed)
    if source == "timm":
        import timm

        model: nn.Module = timm.create_model(arch, pretrained=False, **kwargs)
    else:
        import torchvision

        model = torchvision.models.get_model(arch, weights=None, **kwargs)
    return model.state_dict()


def write_state(path: Path, state: dict[str, torch.Tensor], wrap: str | None = None, prefix: str = "") -> Path:
    """`state` saved as torch.save would by a user: bare, or under `{wrap: ...}` (training scripts), keys prefixed."""
    content: Any = {prefix + k: v for k, v in state.items()}
    if wrap:
        content = {wrap: content, "epoch": 3}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


class PhaseRecorder(L.Callback):
    """At each epoch's first batch (after the module's epoch-start hook): trainable names and optimizer groups."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, Any]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.current_epoch in self.epochs:
            return
        net = pl_module.net
        backbone = net.backbone if hasattr(net, "backbone") else net.body  # TransferNet | BackboneNet
        optimizer = trainer.optimizers[0]
        self.epochs[trainer.current_epoch] = {
            "trainable": {n for n, p in backbone.named_parameters() if p.requires_grad},
            "groups": [(g.get("name"), g["lr"], sum(p.numel() for p in g["params"])) for g in optimizer.param_groups],
            "backbone_training": {n for n, m in backbone.named_modules() if m.training},
        }


def hf_cache_model(hf_home: Path, repo_id: str, state: dict[str, torch.Tensor], commit: str = "0" * 40) -> Path:
    """`state` as `model.safetensors` of Hub repo `repo_id` in the cache layout huggingface_hub reads
    (`hub/models--<owner>--<name>/refs/main` -> `snapshots/<commit>/`), as `hf download` leaves it."""
    from safetensors.torch import save_file

    root = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where the run's `LatestCheckpoint` wrote `last.ckpt`."""
    from cnn_zoo.callbacks.checkpointing import LatestCheckpoint

    latest = next(c for c in trainer.checkpoint_callbacks if isinstance(c, LatestCheckpoint))
    return Path(latest.last_model_path)
