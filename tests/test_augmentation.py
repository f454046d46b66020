"""The augmentation group: albumentations pipelines from yaml, training split only, saved with the run."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import pytest
import torch
from hydra.utils import instantiate

from cnn_zoo.cli.config import CONFIG_DIR
from cnn_zoo.data.image_folder import ImageFolderDataModule
from cnn_zoo.data.transforms import augmentation_transforms, eval_transform
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError
from tests.fixtures import make_image_folder

OPTIONS = sorted(p.stem for p in (Path(CONFIG_DIR) / "augmentation").glob("*.yaml"))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("aug") / "pets", layout="folders", per_class=8, odd_files=False)


def build(compose_cfg, root: Path, *overrides: str) -> ImageFolderDataModule:
    cfg = compose_cfg(
        "data=catsdogs",
        f"paths.data_dir={root.parent}",
        f"data.folder={root.name}",
        "data.image_size=32",
        "data.num_workers=0",
        *overrides,
    )
    dm = instantiate(cfg.data)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_builds_and_keeps_the_shape(compose_cfg, image_root: Path, option: str) -> None:
    dm = build(compose_cfg, image_root, f"augmentation={option}")
    x, _ = dm.train_set[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert (option == "none") == (len(dm.augment) == 0)


def test_notes_pipeline_is_flip_rotate_36_degrees_zoom_20_percent(compose_cfg, image_root: Path) -> None:
    dm = build(compose_cfg, image_root, "augmentation=flip_rotate_zoom")
    flip, affine = dm.augment
    assert isinstance(flip, A.HorizontalFlip) and isinstance(affine, A.Affine)
    params = affine.get_transform_init_args()
    assert tuple(params["rotate"]) == (-36, 36)
    assert tuple(params["scale"]["x"]) == (0.8, 1.2)


def test_augmentation_reaches_the_training_split_only(compose_cfg, image_root: Path) -> None:
    dm = build(compose_cfg, image_root, "augmentation=flip", "augmentation.transforms.0.p=1.0")
    plain = eval_transform(dm.spec)
    for index in range(4):
        x, _ = dm.train_set[index]
        assert torch.equal(x, torch.flip(plain(dm.train_set.cache[index]), dims=[-1]))
    for dataset in (dm.val_set, dm.test_set):
        for index in range(4):
            x, _ = dataset[index]
            assert torch.equal(x, plain(dataset.cache[index]))
            assert not torch.equal(x, torch.flip(x, dims=[-1]))  # the fixture images are not symmetric


def test_random_pipeline_varies_training_samples_but_not_validation(compose_cfg, image_root: Path) -> None:
    dm = build(compose_cfg, image_root, "augmentation=strong")
    assert not torch.equal(dm.train_set[0][0], dm.train_set[0][0])
    assert torch.equal(dm.val_set[0][0], dm.val_set[0][0])


def test_resolved_pipeline_is_saved_in_albumentations_format(compose_cfg, image_root: Path, tmp_path: Path) -> None:
    dm = build(compose_cfg, image_root, "augmentation=strong")
    dm.save_artifacts(tmp_path / "run")
    saved = A.load(str(tmp_path / "run" / "augmentation.yaml"), data_format="yaml")
    assert A.to_dict(saved) == A.to_dict(dm.train_pipeline)
    names = [t["__class_fullname__"] for t in A.to_dict(saved)["transform"]["transforms"]]
    assert names[:3] == ["HorizontalFlip", "Affine", "RandomBrightnessContrast"]
    assert names[-2:] == ["Normalize", "ToTensorV2"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"transforms": [{"_target_": "albumentations.NoSuchFlip"}]}, "bad augmentation transform"),
        ({"transforms": [{"_target_": "albumentations.Affine", "rotate": "wide"}]}, "bad augmentation transform"),
        ({"transforms": [{"p": 0.5}]}, "need a _target_"),
        ({"transforms": [{"_target_": "torch.nn.Identity"}]}, "is not an albumentations transform"),
        ({"transforms": {"_target_": "albumentations.HorizontalFlip"}}, "must be a list"),
        ({"flip": True}, "accepts only a 'transforms' list"),
    ],
)
def test_bad_augmentation_config_is_a_user_error(config: dict, message: str) -> None:
    with pytest.raises(CnnZooError, match=message):
        augmentation_transforms(config)


def test_bad_augmentation_from_the_command_line(compose_cfg, image_root: Path) -> None:
    cfg = compose_cfg("data=catsdogs", "augmentation=flip", "augmentation.transforms.0._target_=albumentations.Nope")
    with pytest.raises(CnnZooError, match="bad augmentation transform albumentations.Nope"):
        ImageFolderDataModule(**{k: v for k, v in to_plain(cfg.data).items() if not k.startswith("_")})
