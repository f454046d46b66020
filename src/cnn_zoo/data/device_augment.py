"""Training augmentation where the batch is: uint8 images in, augmented and normalised float images out.

With `augmentation.device=accelerator` (or `auto` when the model trains on a GPU) the loader ships uint8 CHW
batches (a quarter of float32's bytes, and no per-sample float work on the CPU) with each sample's seed, and
`DeviceAugmentation` runs the configured albumentations pipeline's equivalent on the batch's device:

- the random parameters of sample `i` are drawn from `random.Random(seed_i)` alone, in pipeline order (the
  same seeds the CPU path gets from `cnn_zoo.data.sampling`), so a batch's result depends on its samples'
  seeds only, whatever the worker count, and a resumed run draws the same augmentations;
- the pixels are transformed batched: flips with `torch.where`, every affine warp of the batch in one
  `affine_grid`/`grid_sample` (reflection padding for albumentations' reflect borders), brightness/contrast
  as per-sample scale and shift, blur through torchvision's `transforms.v2.functional.gaussian_blur`, noise
  from a generator on the device seeded by the sample;
- then `(x / 255 - mean) / std`, as `A.Normalize` on the CPU.

The parameter ranges are read from the albumentations transforms themselves (`get_transform_init_args`),
so one augmentation config serves both devices. The two paths draw differently (CPU: NumPy generators inside
albumentations; device: this module), so they are each exact and reproducible, not equal to each other.
Transforms without an equivalent here are refused at setup with the list of those supported.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from cnn_zoo.runtime.errors import CnnZooError

AUGMENTATION_DEVICES = ("cpu", "accelerator", "auto")
REFLECT_BORDERS = (2, 4)  # cv2.BORDER_REFLECT, BORDER_REFLECT_101: grid_sample's "reflection"


def uniform(rng: random.Random, limits: Sequence[float]) -> float:
    low, high = float(limits[0]), float(limits[1])
    return low if low == high else rng.uniform(low, high)


class Op:
    """One transform: `draw` a sample's parameters (None: not applied), `apply` them to a float batch."""

    def __init__(self, p: float) -> None:
        self.p = float(p)

    def draw(self, rng: random.Random) -> Any:
        return self.params(rng) if rng.random() < self.p else None

    def params(self, rng: random.Random) -> Any:
        return True

    def apply(self, x: Tensor, params: list[Any]) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def chosen(params: list[Any], x: Tensor) -> Tensor:
        return torch.tensor([p is not None for p in params], device=x.device).view(-1, 1, 1, 1)


class Flip(Op):
    def __init__(self, p: float, dim: int) -> None:
        super().__init__(p)
        self.dim = dim

    def apply(self, x: Tensor, params: list[Any]) -> Tensor:
        return torch.where(self.chosen(params, x), x.flip(self.dim), x)


class Affine(Op):
    """albumentations' `Affine`: rotation, per-axis scale, translation (fraction of the size), shear, about the
    centre, bilinear, reflect or constant border."""

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args["p"])
        self.rotate = args["rotate"]
        self.scale = args["scale"]
        self.in_pixels = args.get("translate_percent") is None  # translate_px (albumentations' default, 0)
        zero = {"x": (0.0, 0.0), "y": (0.0, 0.0)}
        self.translate = (args.get("translate_px") if self.in_pixels else args["translate_percent"]) or zero
        self.shear = args["shear"]
        self.keep_ratio = bool(args.get("keep_ratio", False))
        self.padding = "reflection" if int(args.get("border_mode", 0)) in REFLECT_BORDERS else "zeros"

    def params(self, rng: random.Random) -> tuple[float, ...]:
        angle = uniform(rng, self.rotate)
        sx = uniform(rng, self.scale["x"])
        sy = sx if self.keep_ratio else uniform(rng, self.scale["y"])
        tx, ty = uniform(rng, self.translate["x"]), uniform(rng, self.translate["y"])
        hx, hy = uniform(rng, self.shear["x"]), uniform(rng, self.shear["y"])
        return angle, sx, sy, tx, ty, hx, hy

    def apply(self, x: Tensor, params: list[Any]) -> Tensor:
        n, _, height, width = x.shape
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        for i, p in enumerate(params):
            if p is None:
                continue
            angle, sx, sy, tx, ty, hx, hy = p
            a = -math.radians(angle)  # albumentations: positive is counter-clockwise on screen
            rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
            tan_x, tan_y = math.tan(math.radians(hx)), math.tan(math.radians(hy))
            shear = torch.tensor([[1.0, tan_x], [tan_y, 1.0]], dtype=torch.float64)
            forward = rotation @ shear @ torch.diag(torch.tensor([sx, sy], dtype=torch.float64))
            inverse = torch.linalg.inv(forward)
            # in grid_sample's normalised coordinates (x/W, y/H scaled to [-1, 1]): D A^-1 D^-1, shift -2 A^-1 t
            d = torch.diag(torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64))
            shift = torch.tensor([tx, ty] if self.in_pixels else [tx * width, ty * height], dtype=torch.float64)
            theta[i, :, :2] = d @ inverse @ torch.linalg.inv(d)
            theta[i, :, 2] = -(d @ inverse @ shift)
        grid = F.affine_grid(theta.to(x.device, torch.float32), list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)
        return torch.where(self.chosen(params, x), warped, x)


class BrightnessContrast(Op):
    """albumentations' `RandomBrightnessContrast`: `x * (1 + c) + b * 255` (b relative to the maximum)."""

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args["p"])
        self.brightness, self.contrast = args["brightness_limit"], args["contrast_limit"]
        if not args.get("brightness_by_max", True):
            raise CnnZooError("augmentation.device=accelerator: RandomBrightnessContrast needs brightness_by_max=true")

    def params(self, rng: random.Random) -> tuple[float, float]:
        return 1.0 + uniform(rng, self.contrast), uniform(rng, self.brightness) * 255.0

    def apply(self, x: Tensor, params: list[Any]) -> Tensor:
        alpha = torch.tensor([p[0] if p else 1.0 for p in params], device=x.device).view(-1, 1, 1, 1)
        beta = torch.tensor([p[1] if p else 0.0 for p in params], device=x.device).view(-1, 1, 1, 1)
        return (x * alpha + beta).clamp_(0.0, 255.0)


class Blur(Op):
    """albumentations' `GaussianBlur`: an odd kernel size from `blur_limit`, sigma from `sigma_limit`."""

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args["p"])
        low, high = (int(v) for v in args["blur_limit"])
        self.sizes = [k for k in range(max(3, low), high + 1) if k % 2 == 1] or [3]
        self.sigma = args.get("sigma_limit") or (0.5, 3.0)

    def params(self, rng: random.Random) -> tuple[int, float]:
        return rng.choice(self.sizes), uniform(rng, self.sigma)

    def apply(self, x: Tensor, params: list[Any]) -> Tensor:
        out = x.clone()
        for i, p in enumerate(params):
            if p is not None:
                out[i] = TF.gaussian_blur(x[i], kernel_size=[p[0], p[0]], sigma=[p[1], p[1]])
        return out


class Noise(Op):
    """albumentations' `GaussNoise`: std (and mean) drawn as fractions of 255, noise from a seeded generator."""

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args["p"])
        self.std, self.mean = args["std_range"], args.get("mean_range") or (0.0, 0.0)
        self.per_channel = bool(args.get("per_channel", True))

    def params(self, rng: random.Random) -> tuple[float, float, int]:
        return uniform(rng, self.std) * 255.0, uniform(rng, self.mean) * 255.0, rng.getrandbits(63)

    def apply(self, x: Tensor, params: list[Any]) -> Tensor:
        out = x.clone()
        for i, p in enumerate(params):
            if p is None:
                continue
            generator = torch.Generator(device=x.device).manual_seed(p[2])
            shape = x[i].shape if self.per_channel else (1, *x.shape[2:])
            noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
            out[i] = (x[i] + noise * p[0] + p[1]).clamp_(0.0, 255.0)
        return out


class OneOf(Op):
    """albumentations' `OneOf`: with probability p, one child chosen by the children's p as weights."""

    def __init__(self, p: float, children: list[tuple[Op, float]]) -> None:
        super().__init__(p)
        self.children = [child for child, _ in children]
        self.weights = [weight for _, weight in children]

    def params(self, rng: random.Random) -> tuple[int, Any]:
        index = rng.choices(range(len(self.children)), weights=self.weights)[0]
        return index, self.children[index].params(rng)

    def apply(self, x: Tensor, params: list[Any]) -> Tensor:
        for index, child in enumerate(self.children):
            own = [p[1] if p is not None and p[0] == index else None for p in params]
            if any(p is not None for p in own):
                x = child.apply(x, own)
        return x


def device_op(transform: Any) -> Op:
    """The device equivalent of one albumentations transform (its configured ranges)."""
    import albumentations as A

    name = type(transform).__name__
    if isinstance(transform, A.OneOf):
        return OneOf(transform.p, [(device_op(child), float(child.p)) for child in transform.transforms])
    args = {"p": transform.p, **transform.get_transform_init_args()}
    if isinstance(transform, A.HorizontalFlip):
        return Flip(args["p"], -1)
    if isinstance(transform, A.VerticalFlip):
        return Flip(args["p"], -2)
    if isinstance(transform, A.Affine):
        return Affine(args)
    if isinstance(transform, A.RandomBrightnessContrast):
        return BrightnessContrast(args)
    if isinstance(transform, A.GaussianBlur):
        return Blur(args)
    if isinstance(transform, A.GaussNoise):
        return Noise(args)
    raise CnnZooError(
        f"augmentation.device=accelerator has no device version of albumentations.{name}; supported: "
        "HorizontalFlip, VerticalFlip, Affine, RandomBrightnessContrast, GaussianBlur, GaussNoise, OneOf "
        "(or set augmentation.device=cpu)"
    )


class DeviceAugmentation:
    """uint8 (N, C, H, W) batch on any device + per-sample seeds -> augmented, normalised float32 batch."""

    def __init__(self, augment: Sequence[Any], mean: Sequence[float], std: Sequence[float]) -> None:
        self.ops = [device_op(transform) for transform in augment]
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, x: Tensor, seeds: Tensor | None = None) -> Tensor:
        """`seeds` (one per sample, -1: none) present means a training batch: augmented; absent: normalised only."""
        out = x.float()
        if seeds is not None and self.ops:
            rngs = [random.Random(int(s) if s >= 0 else int(torch.randint(2**62, (1,)))) for s in seeds.tolist()]
            for op in self.ops:
                out = op.apply(out, [op.draw(rng) for rng in rngs])
        mean, std = self.mean.to(out.device), self.std.to(out.device)
        return (out / 255.0 - mean) / std
