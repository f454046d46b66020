"""Image preprocessing shared by training, evaluation and prediction.

Two halves, so a small dataset can be decoded once and cached:
- `decode_image`: file -> RGB (or grayscale) uint8 array at the model's input size;
- `build_transform`: the per-sample albumentations pipeline (training augmentation, then normalisation, then a
  CHW tensor). The evaluation pipeline is built from the data facts alone (`eval_transform`), so `predict` uses
  exactly the code path of the datamodule's validation and test sets.

Called with a seed (`ImageTransform(array, seed)`), the pipeline's random draws depend on that seed only; the
training sampler derives it from (run seed, epoch, sample index), see `cnn_zoo.data.sampling`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import

import albumentations as A  # noqa: E402
import hydra.utils  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from cnn_zoo.runtime.errors import CnnZooError  # noqa: E402
from cnn_zoo.training.mixing import MIXING_KEYS  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
NORMALIZATIONS = ("rescale", "imagenet")  # x / 255 (Keras' Rescaling(1/255) in the notes) | ImageNet mean/std
# `weights`: the pretrained weights' own mean/std, given as data.mean / data.std (cnn_zoo.models.preprocessing)
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}  # Keras' color_mode names -> channels
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def image_size_pair(value: int | list[int] | tuple[int, ...]) -> list[int]:
    """`180` or `[180, 180]` -> `[height, width]`."""
    if isinstance(value, int | str):
        value = [value, value]
    try:
        size = [int(v) for v in value]
    except (TypeError, ValueError):
        size = []
    if len(size) != 2 or min(size) < 8:
        raise CnnZooError(f"data.image_size must be an integer >= 8 or [height, width], got {value!r}")
    return size


def normalization_stats(
    name: str, channels: int = 3, mean: list[float] | None = None, std: list[float] | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean/std: `rescale` = [0, 1]; `imagenet` = ImageNet's for RGB (gray: their average; alpha 0/1);
    `weights` = the given `mean`/`std` (the pretrained weights', set by cnn_zoo.models.preprocessing)."""
    if name == "weights":
        if not mean or not std or len(mean) != len(std):
            raise CnnZooError(
                "data.normalization=weights needs data.mean and data.std (set from a pretrained model's weights: "
                "use it with model=timm_frozen and the like), or choose rescale / imagenet"
            )
        if len(mean) != channels:
            gray = [sum(mean) / len(mean)], [sum(std) / len(std)]
            return gray if channels == 1 else ((list(mean) + [0.0])[:channels], (list(std) + [1.0])[:channels])
        return [float(v) for v in mean], [float(v) for v in std]
    if name not in NORMALIZATIONS:
        raise CnnZooError(f"data.normalization must be one of {sorted(NORMALIZATIONS)} or weights, got {name!r}")
    if name == "rescale":
        return [0.0] * channels, [1.0] * channels
    if channels == 1:
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    return (IMAGENET_MEAN + [0.0])[:channels], (IMAGENET_STD + [1.0])[:channels]


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def resampling(name: str) -> Image.Resampling:
    if name not in INTERPOLATIONS:
        raise CnnZooError(f"data.interpolation must be one of {list(INTERPOLATIONS)}, got {name!r}")
    return INTERPOLATIONS[name]


def scale_and_crop(image: Image.Image, size: list[int], crop_pct: float, method: Image.Resampling) -> Image.Image:
    """timm's evaluation framing: shorter side to size / crop_pct (each side for non-square sizes), centre crop."""
    import math

    height, width = size
    scale = [math.floor(v / crop_pct + 1e-6) for v in size]
    if scale[0] == scale[1]:  # torchvision Resize(int): the shorter side, aspect ratio kept
        short = scale[0]
        w, h = image.size
        new = (short, max(short, round(h * short / w))) if w <= h else (max(short, round(w * short / h)), short)
    else:
        new = (scale[1], scale[0])
    if image.size != new:
        image = image.resize(new, method)
    left, top = (new[0] - width) // 2, (new[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


def decode_image(
    path: str | Path, size: list[int], channels: int = 3, resize: str = "bilinear", crop_pct: float | None = None
) -> np.ndarray:
    """Read `path` as an (H, W, C) uint8 array resized to `size` (aspect ratio not kept, as Keras' loaders), or,
    with `crop_pct`, scaled and centre-cropped as timm and torchvision evaluate (`scale_and_crop`).

    Any file mode (grayscale, RGBA, CMYK, palette) becomes `channels` channels: 3 = RGB, 1 = L, 4 = RGBA. JPEG
    decoding is scaled down by the decoder when the file is much larger than `size` (`draft`), the expensive part.
    Raises `OSError`/`ValueError` family errors for unreadable files; callers decide what to do with them.
    """
    height, width = size
    target = PIL_MODES[channels]
    method = resampling(resize)
    with Image.open(path) as image:
        draft = (width, height) if crop_pct is None else (int(width / crop_pct) + 1, int(height / crop_pct) + 1)
        image.draft("L" if channels == 1 else "RGB", draft)
        image = ImageOps.exif_transpose(image)
        if image.mode == "P" or (image.mode == "LA" and channels != 1):
            image = image.convert("RGBA")
        image = image.convert(target)
        if crop_pct is not None:
            image = scale_and_crop(image, [height, width], float(crop_pct), method)
        elif image.size != (width, height):
            image = image.resize((width, height), method)
        array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def instantiate_transform(config: dict[str, Any]) -> A.BasicTransform:
    """One albumentations transform from `{_target_: albumentations.X, ...}` (nested `transforms` allowed)."""
    if not isinstance(config, dict) or "_target_" not in config:
        raise CnnZooError(
            f"augmentation.transforms entries need a _target_ (e.g. albumentations.HorizontalFlip), got {config!r}"
        )
    config = dict(config)
    if "transforms" in config:  # OneOf / SomeOf / Sequential
        config["transforms"] = [instantiate_transform(child) for child in config["transforms"]]
    try:
        transform = hydra.utils.instantiate(config, _convert_="all")
    except Exception as err:
        cause = err.__cause__ or err
        raise CnnZooError(f"bad augmentation transform {config['_target_']}: {str(cause).splitlines()[0]}") from err
    if not isinstance(transform, A.BasicTransform | A.BaseCompose):
        raise CnnZooError(f"augmentation transform {config['_target_']} is not an albumentations transform")
    return transform


def augmentation_transforms(augmentation: dict[str, Any] | None) -> list[A.BasicTransform]:
    """The training-only transforms of an `augmentation` config group (`transforms: [...]`; null = none)."""
    if not augmentation:
        return []
    unknown = set(augmentation) - {"transforms", "device", *MIXING_KEYS}  # device: data/device_augment.py;
    if unknown:  # the batch-mixing keys: the classifier's
        raise CnnZooError(
            f"augmentation config accepts only a 'transforms' list, 'device' and {', '.join(MIXING_KEYS)}, got keys "
            f"{sorted(unknown)}"
        )
    entries = augmentation.get("transforms") or []
    if not isinstance(entries, list):
        raise CnnZooError(f"augmentation.transforms must be a list of transforms, got {entries!r}")
    return [instantiate_transform(entry) for entry in entries]


def build_transform(mean: list[float], std: list[float], augment: list[A.BasicTransform] = ()) -> A.Compose:
    """`augment` on the uint8 image, then (x/255 - mean)/std and HWC -> CHW float tensor."""
    return A.Compose([*augment, A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()])


class ImageTransform:
    """Decode (file -> resized uint8 array) and per-sample pipeline (array -> tensor), from `ImagePreprocessing`."""

    def __init__(self, preprocessing: Any, augment: list[A.BasicTransform] = ()) -> None:
        self.size = image_size_pair(list(preprocessing.size))
        self.channels = preprocessing.channels
        self.resize = str(getattr(preprocessing, "resize", "bilinear"))
        self.crop_pct = getattr(preprocessing, "crop_pct", None)
        self.random = bool(augment)  # whether the pipeline draws random numbers at all
        self.pipeline = build_transform(list(preprocessing.mean), list(preprocessing.std), augment)

    def decode(self, path: str | Path) -> np.ndarray:
        return decode_image(path, self.size, self.channels, self.resize, self.crop_pct)

    def __call__(self, array: np.ndarray, seed: int | None = None) -> Any:
        """The pipeline on `array`; with `seed`, its random draws are a function of that seed alone.

        One NumPy and one Python generator, seeded with `seed`, are shared by the whole pipeline
        (`set_random_state`): albumentations' `set_random_seed` would give every transform its own generator
        with the same seed, so their draws (each one's `random() < p` first of all) would be the same numbers.
        """
        if seed is not None and self.random:
            self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return self.pipeline(image=array)["image"]


def eval_transform(spec: Any) -> ImageTransform:
    """The validation / test / predict preprocessing of a `DataSpec` (or its dict): all in a checkpoint."""
    from cnn_zoo.data.spec import DataSpec, ImagePreprocessing

    spec = spec if isinstance(spec, DataSpec) else DataSpec.from_dict(spec)
    if not isinstance(spec.preprocessing, ImagePreprocessing):
        raise CnnZooError(f"this data is {spec.kind}, not images: image preprocessing needs an image datamodule")
    return spec.preprocessing.transform()
