"""`python -m cnn_zoo.explain ckpt_path=... input=... method=gradcam|activations|saliency`: see what the network sees.

From the checkpoint alone (its data spec rebuilds the preprocessing, its data kind reads and draws the inputs),
for each input it writes PNGs and an
`index.html` showing them beside the prediction and its probability, into `outputs/explain/<time>/`:
- `activations`: every convolution's feature maps (a grid per layer, with its name and output shape);
- `gradcam`: the class-activation heatmap over the input (images; per token for text, per time step for sequences)
  at the last convolution or `layer=<name>`, for the predicted class, `target=<class>` or `target=all`;
- `saliency`: input attributions: integrated gradients per token (text) or per feature and time step
  (sequences) over the embedding / input, the gradient magnitude per pixel (images).
Attributions come from captum (`cnn_zoo.interpretation`); test-time augmentation is off.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from cnn_zoo.cli.hydra_entry import entry_point
from cnn_zoo.data.kinds import RawInput, Sample
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.interpretation import render
from cnn_zoo.interpretation.activations import activations
from cnn_zoo.interpretation.gradcam import gradcam
from cnn_zoo.interpretation.index import Entry, write_index
from cnn_zoo.interpretation.layers import NoSpatialLayer, conv_layers, find_layer
from cnn_zoo.runtime import startup_gc
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.training.classifier import Classifier
from cnn_zoo.training.inference import load_classifier

log = logging.getLogger(__name__)

METHODS = ("gradcam", "activations", "saliency")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise CnnZooError(f"device={name!r}: choose cpu, cuda or auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnZooError("device=cuda but no CUDA device is available; use device=cpu")
    return torch.device(name)


def targets_for(target: str | int | None, predicted: int, spec: DataSpec) -> list[int]:
    if target is None or str(target) == "":
        return [predicted]
    if str(target) == "all":
        return list(range(spec.num_classes))
    return [spec.class_index(target)]


class Explainer:
    """One method on one model: figures for each input, named after it, in `folder`; the data kind computes the
    attributions that depend on the input (per pixel, per word, per feature) and draws them."""

    def __init__(self, model: Classifier, spec: DataSpec, cfg: DictConfig, folder: Path) -> None:
        self.model, self.spec, self.kind, self.folder = model, spec, spec.data_kind, folder
        self.method = str(cfg.method)
        self.max_maps, self.steps = int(cfg.max_maps), int(cfg.steps)
        self.layers: list[str] | None = None
        if self.method == "gradcam":
            try:
                self.layer_name, self.layer = find_layer(model, cfg.get("layer"))
            except NoSpatialLayer as err:
                log.warning("%s: explaining with integrated gradients instead", err)
                self.method = "integrated_gradients"
        elif cfg.get("layer"):
            name, module = find_layer(model, cfg.layer)
            if name not in conv_layers(model):
                raise CnnZooError(f"layer={name!r} is not a convolution; activations of: {list(conv_layers(model))}")
            self.layers = [name]

    def run(self, sample: Sample, entry: Entry, targets: list[int]) -> None:
        x = sample.x.to(self.model.device)
        if self.method == "activations":
            for maps in activations(self.model, x, self.layers):
                path = self.folder / f"{sample.name}_activations_{maps.layer.replace('.', '-')}.png"
                entry.figures.append(render.activation_grid(maps, path, self.max_maps, sample.name))
            return
        for target in targets:
            name = self.spec.class_names[target]
            path = self.folder / f"{sample.name}_{self.method}_{name}.png"
            binary, steps = self.model.binary, self.steps
            if self.method == "gradcam":
                cam = gradcam(self.model, self.layer, x, target, binary)[0].numpy()
                title = f"Grad-CAM for '{name}' at {self.layer_name}"
                self.kind.draw(self.spec, sample, cam, path, title, "Grad-CAM", entry)
                continue
            if self.method == "integrated_gradients":
                result = self.kind.integrated_gradients(self.spec, self.model, x, target, binary, steps)
                values = result.values.clamp(min=0).numpy()  # evidence for the class, as Grad-CAM's ReLU keeps
                values = values / (values.max() or 1.0)
                what = label = "integrated gradients"
            else:
                result, what = self.kind.saliency(self.spec, self.model, x, target, binary, steps)
                values, label = result.values.numpy(), "saliency"
            if result.delta is not None:
                entry.notes.append(f"integrated gradients for '{name}': completeness error {result.delta:.2e}")
            self.kind.draw(self.spec, sample, values, path, f"{what} for '{name}'", label, entry)


def explain(cfg: DictConfig) -> Path:
    """Explain every input of `cfg.input` with `cfg.method`; returns the written `index.html`."""
    L.seed_everything(cfg.seed, workers=True)
    if cfg.method not in METHODS:
        raise CnnZooError(f"method={cfg.method!r} is not known; choose one of {list(METHODS)}")
    started = time.perf_counter()
    model = load_classifier(cfg.ckpt_path)  # TTA off: one network pass is what is explained
    model.to(pick_device(str(cfg.device)))
    spec = model.spec
    folder = Path(cfg.paths.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    explainer = Explainer(model, spec, cfg, folder)
    limit = int(cfg.max_inputs)  # no more inputs read or decoded than are explained
    source = RawInput(cfg.input, cfg.get("input_column"), batch_size=limit, chunk_size=limit)
    samples = spec.data_kind.explained(spec, source, limit, cfg.get("start"))
    if source.unreadable:
        log.warning("%d unreadable file(s) not explained: %s", len(source.unreadable),
                    "; ".join(f"{path} ({reason})" for path, reason in source.unreadable))  # fmt: skip
    entries, seconds = [], []
    startup_gc.resume()  # drawing makes cyclic garbage (matplotlib figures)
    for sample in samples:
        begin = time.perf_counter()
        with torch.no_grad():
            probs = model.class_probabilities(model.view_probabilities(sample.x.to(model.device)))[0].cpu()
        predicted = int(probs.argmax())
        true = spec.class_names[sample.label] if sample.label is not None else None
        entry = Entry(sample.name, sample.source, spec.class_names[predicted], float(probs[predicted]), true)
        explainer.run(sample, entry, targets_for(cfg.get("target"), predicted, spec))
        entries.append(entry)
        seconds.append(time.perf_counter() - begin)
        log.info("%s: %s %.3f, %d figure(s) in %.2f s", sample.name, entry.predicted, entry.probability,
                 len(entry.figures), seconds[-1])  # fmt: skip
    header = [f"checkpoint {Path(str(cfg.ckpt_path)).resolve()}", f"method {cfg.method}; input {cfg.input}"]
    index = write_index(folder, f"explain: {cfg.method}", entries, header)
    summary = {
        "method": str(cfg.method),
        "inputs": len(entries),
        "figures": sum(len(e.figures) for e in entries),
        "seconds_total": round(time.perf_counter() - started, 3),
        "seconds_per_input": [round(s, 3) for s in seconds],
        "predictions": [{"input": e.source, "predicted": e.predicted, "probability": e.probability} for e in entries],
    }
    (folder / "explain.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("%d input(s) explained in %.1f s: %s", len(entries), summary["seconds_total"], index)
    return index


main = entry_point(explain, "explain")


if __name__ == "__main__":
    main()
