"""Images: files decoded, resized and normalised; the only kind that takes TTA views, channels_last, albumentations
pipelines and mixup/CutMix (they flip, zoom, reorder pixels or blend them)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cnn_zoo.data.kinds.base import DataKind, MistakeDrawing, RawInput, Sample, register_kind
from cnn_zoo.runtime.errors import CnnZooError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor, nn

    from cnn_zoo.data.spec import DataSpec
    from cnn_zoo.interpretation.attribution import Attribution
    from cnn_zoo.interpretation.index import Entry

# image data config keys that must follow the checkpoint when `data=` rebuilds the datamodule from config
FOLLOW_CHECKPOINT = {
    "image_size": "size",
    "normalization": "normalization",
    "color_mode": "color_mode",
    "mean": "mean",
    "std": "std",
    "interpolation": "resize",
    "crop_pct": "crop_pct",
}
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


@dataclass(frozen=True)
class ImagePreprocessing:
    """File -> resized uint8 array (color mode, size) -> (x/255 - mean)/std as a CHW float tensor.

    `resize` is the interpolation; `crop_pct` None squashes the whole image to `size` (Keras' loaders), a number
    resizes the shorter side to size / crop_pct and takes the centre `size` (timm's and torchvision's evaluation).
    """

    kind: ClassVar[str] = "image"
    size: tuple[int, int]
    color_mode: str = "rgb"  # rgb | grayscale | rgba (Keras' names)
    normalization: str = "rescale"
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: str = "bilinear"
    crop_pct: float | None = None

    @property
    def channels(self) -> int:
        return CHANNELS[self.color_mode]

    def transform(self, augment: Sequence[Any] = ()) -> Any:
        """The per-file transform (`decode` a path, then call on the array); `augment` only for training."""
        from cnn_zoo.data.transforms import ImageTransform

        return ImageTransform(self, list(augment))


@register_kind
class ImageKind(DataKind):
    name = "image"
    label = "images"
    preprocessing = ImagePreprocessing
    reads = "an image file (jpg, png, bmp, gif, webp, tif) or a folder of them"
    accepts = frozenset({"tta", "channels_last", "augmentation", "mixing"})

    def network_inputs(self, spec: DataSpec) -> dict[str, Any]:
        prep = spec.preprocessing
        return {
            "in_channels": self.in_channels(spec),
            "input_size": list(prep.size),
            "normalization": prep.normalization,
            "train_augmentation": spec.train_augmentation,
        }

    def from_facts(self, facts: Mapping[str, Any], config: Mapping[str, Any]) -> ImagePreprocessing:
        channels = int(facts.get("in_channels", facts["input_shape"][0]))
        return ImagePreprocessing(
            size=tuple(int(v) for v in facts.get("input_size", facts["input_shape"][1:])),
            color_mode=str(facts.get("color_mode") or {1: "grayscale", 3: "rgb", 4: "rgba"}[channels]),
            normalization=str(facts.get("normalization") or config.get("normalize") or "standard"),
            mean=tuple(float(v) for v in facts.get("mean", [0.0] * channels)),  # hand-made facts may omit them
            std=tuple(float(v) for v in facts.get("std", [1.0] * channels)),
            resize=str(facts.get("resize", "bilinear")),
            crop_pct=facts.get("crop_pct"),
        )

    def summary(self, spec: DataSpec) -> list[tuple[str, str]]:
        return [("normalization", spec.preprocessing.normalization), ("color_mode", spec.preprocessing.color_mode)]

    def follow_checkpoint(self, spec: DataSpec, config: dict[str, Any]) -> dict[str, Any]:
        """The image size, normalisation and color mode come from the checkpoint: the network only understands
        inputs prepared the way it was trained."""
        config = dict(config)
        for key, field_name in FOLLOW_CHECKPOINT.items():
            if key in config:
                value = getattr(spec.preprocessing, field_name)
                config[key] = list(value) if isinstance(value, tuple) else value
        return config

    # ------------------------------------------------------------------ raw inputs
    def samples(self, spec: DataSpec, source: RawInput) -> Iterator[Sample]:
        """Image files decoded `chunk_size` at a time on `num_workers` workers; unreadable ones are collected."""
        from cnn_zoo.data.image_folder import scan
        from cnn_zoo.data.transforms import IMAGE_EXTENSIONS, is_image_file  # albumentations: images only

        files = self.files(self.existing(source), is_image_file, IMAGE_EXTENSIONS)
        transform = spec.preprocessing.transform()
        chunk_size = max(1, int(source.chunk_size))
        for start in range(0, len(files), chunk_size):
            chunk = [(path, -1) for path in files[start : start + chunk_size]]
            good, arrays, bad = scan(chunk, transform.decode, int(source.num_workers))
            source.unreadable += bad
            for (path, _), array in zip(good, arrays, strict=True):
                x = transform(array).unsqueeze(0).float()
                yield Sample({"path": str(path)}, path.stem, str(path), x, shown=array)
        if len(source.unreadable) >= len(files):
            raise CnnZooError(f"none of the {len(files)} image file(s) under {source.path} could be read")

    # ------------------------------------------------------------------ showing inputs
    def displayable(self, spec: DataSpec, x: Tensor) -> Tensor:
        """Network inputs back to [0, 1] images: the datamodule's mean/std undone."""
        import torch

        x = x.detach().float().cpu()
        shape = (1, -1, 1, 1)
        mean = torch.tensor(spec.preprocessing.mean, dtype=x.dtype).view(shape)
        std = torch.tensor(spec.preprocessing.std, dtype=x.dtype).view(shape)
        return (x * std + mean).clamp(0.0, 1.0)

    def preview(self, spec: DataSpec, x: Any) -> Tensor | None:
        import torch

        if isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point():
            return self.displayable(spec, x)
        return None

    def integrated_gradients(
        self, spec: DataSpec, model: nn.Module, x: Tensor, target: int, binary: bool, steps: int
    ) -> Attribution:
        from cnn_zoo.interpretation.attribution import image_integrated_gradients

        return image_integrated_gradients(model, x, target, binary, steps)

    def saliency(
        self, spec: DataSpec, model: nn.Module, x: Tensor, target: int, binary: bool, steps: int
    ) -> tuple[Attribution, str]:
        """|d score / d pixel|, scaled to a maximum of 1."""
        from dataclasses import replace

        from cnn_zoo.interpretation.attribution import saliency

        result = saliency(model, x, target, binary)
        return replace(result, values=result.values / (float(result.values.max()) or 1.0)), "saliency"

    def draw(self, spec: DataSpec, sample: Sample, values: np.ndarray, path: Path, title: str, label: str,
             entry: Entry) -> None:  # fmt: skip
        from cnn_zoo.interpretation import render

        image = np.asarray(sample.shown, dtype=np.float32) / 255.0
        entry.figures.append(render.heatmap_figure(image, values, path, f"{sample.name}: {title}", label))

    def draw_mistakes(self, spec: DataSpec, drawing: MistakeDrawing) -> Figure | None:
        """The top-loss images with the Grad-CAM of their (wrong) prediction over them."""
        from cnn_zoo.interpretation.render import mistakes_grid

        images = self.displayable(spec, drawing.inputs).permute(0, 2, 3, 1).numpy()
        heatmaps = drawing.heatmaps()
        title = "top losses: true→predicted, probability, loss"
        if heatmaps is not None:
            title += " (Grad-CAM of the prediction)"
        path = drawing.folder / "top_losses.png" if drawing.folder is not None else None
        return mistakes_grid(images, heatmaps, drawing.labels, path, title, drawing.nrow)
