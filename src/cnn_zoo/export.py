"""`python -m cnn_zoo.export ckpt_path=... format=onnx|torchscript`: the network as one file, plus a JSON sidecar.

The exported graph maps a preprocessed batch to class probabilities (N, C) (softmax; binary: [1 - p, p]), in
eval mode, with training-only state off (dropout, the transfer feature cache: `ExportableNet.prepare_export`).
The sidecar (`<file>.json`) says what goes in: input name, shape and dtype, and the whole preprocessing of the
spec (image size, color mode, normalisation; vocabulary and padding; feature columns and scaler), plus the class
names of the output. `predict model_path=<file>` runs it, and the export itself checks parity with PyTorch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from cnn_zoo.cli.hydra_entry import entry_point
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.models.interfaces import ExportableNet
from cnn_zoo.runtime import startup_gc
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.training.inference import load_classifier

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT, OUTPUT = "input", "probabilities"
DTYPES = {"float32": torch.float32, "int64": torch.int64}


class Probabilities(nn.Module):
    """The network under the Classifier's output rule: (N, C) class probabilities."""

    def __init__(self, net: nn.Module, binary: bool) -> None:
        super().__init__()
        self.net, self.binary = net, binary

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(x).float()
        if self.binary:
            positive = torch.sigmoid(logits[:, 0])
            return torch.stack([1 - positive, positive], dim=1)
        return torch.softmax(logits, dim=1)


def example_input(spec: DataSpec, batch: int = 2, seed: int = 0) -> Tensor:
    """A batch of the spec's shape, as its kind makes one (token ids inside the vocabulary for text)."""
    return spec.data_kind.example_input(spec, batch, seed)


def sidecar(spec: DataSpec, fmt: str, file: Path, parity: float) -> dict[str, Any]:
    described = spec.to_dict()
    described.pop("stats")
    described.pop("datamodule")
    return {
        "format": fmt,
        "file": file.name,
        "input": {"name": INPUT, "shape": [None, *spec.input_shape], "dtype": spec.input_dtype},
        "output": {"name": OUTPUT, "shape": [None, spec.num_classes], "classes": list(spec.class_names)},
        "parity_max_abs_diff": parity,
        "spec": described,
    }


def export_module(module: nn.Module, example: Tensor, fmt: str, path: Path, dynamo: bool, opset: int | None) -> None:
    if fmt == "torchscript":
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path))
        return
    kwargs: dict[str, Any] = {"input_names": [INPUT], "output_names": [OUTPUT], "dynamo": dynamo}
    if opset:
        kwargs["opset_version"] = int(opset)
    if dynamo:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
    else:
        kwargs["dynamic_axes"] = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}
    try:
        torch.onnx.export(module, (example,), str(path), **kwargs)
    except ImportError as err:
        raise CnnZooError(f"ONNX export needs the `export` extra: pip install 'cnn_zoo[export]' ({err})") from err


class ExportedPredictor:
    """An exported file (ONNX Runtime or TorchScript) with its sidecar: the `Predictor` `predict` uses."""

    def __init__(self, model_path: str) -> None:
        path = Path(model_path).expanduser().resolve()
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise CnnZooError(
                f"exported model not found: {path} and its sidecar {meta_path} are both needed "
                "(write them with python -m cnn_zoo.export ckpt_path=...)"
            )
        self.meta = json.loads(meta_path.read_text())
        self.spec = DataSpec.from_dict(self.meta["spec"])
        if self.meta["format"] == "onnx":
            try:
                import onnxruntime
            except ImportError as err:
                raise CnnZooError("running an ONNX model needs onnxruntime: pip install 'cnn_zoo[export]'") from err
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.run = lambda x: torch.from_numpy(self.session.run([OUTPUT], {INPUT: x.numpy()})[0])
        else:
            module = torch.jit.load(str(path), map_location="cpu").eval()
            self.run = lambda x: module(x)

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> Tensor:
        return self.run(x.to(DTYPES[self.spec.input_dtype]).contiguous())


def export(cfg: DictConfig) -> Path:
    """Write `<output_dir>/<name>.<onnx|pt>` and `<name>.json`; returns the model file."""
    fmt = str(cfg.format)
    if fmt not in FORMATS:
        raise CnnZooError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    model = load_classifier(cfg.ckpt_path)
    spec = model.spec
    net = model.net.eval()
    if isinstance(net, ExportableNet):
        net.prepare_export()
    module = Probabilities(net, spec.num_classes == 2).eval()
    out_dir = Path(str(cfg.output_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{cfg.name}{FORMATS[fmt]}"
    example = example_input(spec)
    startup_gc.resume()  # tracing and export make cyclic garbage
    with torch.no_grad():
        export_module(module, example, fmt, path, bool(cfg.get("dynamo", False)), cfg.get("opset"))
        check = example_input(spec, batch=5, seed=1)  # another batch size: the batch axis is dynamic
        expected = module(check)
    path.with_suffix(".json").write_text(json.dumps(sidecar(spec, fmt, path, 0.0), indent=1) + "\n")
    got = ExportedPredictor(str(path)).probabilities(check)
    parity = float((got - expected).abs().max())
    path.with_suffix(".json").write_text(json.dumps(sidecar(spec, fmt, path, parity), indent=1) + "\n")
    if parity > float(cfg.tolerance):
        raise CnnZooError(
            f"the exported {fmt} model differs from PyTorch by {parity:.2e} (> tolerance {cfg.tolerance})"
        )
    sidecar_name = path.with_suffix(".json").name
    log.info("%s model written to %s (+ %s); max |exported - PyTorch| = %.2e", fmt, path, sidecar_name, parity)
    return path


main = entry_point(export, "export")


if __name__ == "__main__":
    main()
