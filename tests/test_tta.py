"""Test-time augmentation: the config options, identity views, the merge, and the Classifier's use of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnn_zoo.cli.config import CONFIG_DIR
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.training.classifier import Classifier
from cnn_zoo.training.tta import TestTimeAugmentation as TTA  # (an alias pytest does not try to collect)

OPTIONS = sorted(p.stem for p in (Path(CONFIG_DIR) / "tta").glob("*.yaml"))
FACTS = {"kind": "image", "num_classes": 2, "class_names": ["cats", "dogs"], "in_channels": 3,
         "input_size": [16, 16], "input_shape": [3, 16, 16], "input_dtype": "float32"}  # fmt: skip
NET = {"_target_": "cnn_zoo.models.small_cnn.SmallCNN", "filters": [4, 8], "dense": []}
OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}


def classifier(tta: dict | None, num_classes: int = 2) -> Classifier:
    torch.manual_seed(0)
    facts = {**FACTS, "num_classes": num_classes, "class_names": [str(i) for i in range(num_classes)]}
    return Classifier(net=NET, data=facts, optimizer=OPTIMIZER, tta=tta).eval()


def left_brightness(batch: torch.Tensor) -> torch.Tensor:
    """A stand-in model whose output changes under a flip: mean of the left half, squashed to (0, 1)."""
    return torch.sigmoid(batch[..., : batch.shape[-1] // 2].mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_composes_and_parses(compose_cfg, option: str) -> None:
    tta = to_plain(compose_cfg(f"tta={option}").tta)
    augmentation = TTA(**(tta or {}))
    assert augmentation.active == (option != "none")
    batch = torch.rand(2, 3, 16, 16)
    for view in augmentation.views:
        assert view(batch).shape == batch.shape


def test_options_have_the_views_they_promise(compose_cfg) -> None:
    assert to_plain(compose_cfg("tta=hflip").tta) == {"views": ["hflip"], "merge": "mean"}
    assert len(to_plain(compose_cfg("tta=hflip_scale").tta)["views"]) == 3
    assert to_plain(compose_cfg("tta=hflip", "tta.merge=max").tta)["merge"] == "max"


@pytest.mark.parametrize("identity", ["hflip+hflip", "vflip+vflip", "zoom_1.0"])
def test_identity_view_equals_plain_prediction(identity: str) -> None:
    x = torch.rand(5, 3, 16, 16)
    plain = classifier(None)
    with_tta = classifier({"views": [identity], "merge": "mean"})
    assert with_tta.tta.active
    assert torch.allclose(plain.predict_step(x, 0), with_tta.predict_step(x, 0), atol=1e-6)


def test_merge_averages_or_takes_the_max_over_the_original_and_its_views() -> None:
    x = torch.rand(4, 3, 8, 8)
    original, flipped = left_brightness(x), left_brightness(torch.flip(x, dims=[-1]))
    assert not torch.allclose(original, flipped)
    mean = TTA(["hflip"], "mean")(left_brightness, x)
    assert torch.allclose(mean, (original + flipped) / 2)
    maximum = TTA(["hflip"], "max")(left_brightness, x)
    assert torch.allclose(maximum, torch.maximum(original, flipped))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_classifier_predictions_are_the_mean_of_view_probabilities(num_classes: int) -> None:
    x = torch.rand(3, 3, 16, 16)
    plain = classifier(None, num_classes)
    tta = classifier({"views": ["hflip"], "merge": "mean"}, num_classes)
    expected = (plain.predict_step(x, 0) + plain.predict_step(torch.flip(x, dims=[-1]), 0)) / 2
    result = tta.predict_step(x, 0)
    assert result.shape == (3, num_classes)
    assert torch.allclose(result, expected, atol=1e-6)
    assert torch.allclose(result.sum(dim=1), torch.ones(3))


@pytest.mark.parametrize(
    ("tta", "message"),
    [
        ({"views": ["hflip"], "merge": "median"}, "tta.merge must be one of"),
        ({"views": ["rotate_90"]}, "unknown tta view operation 'rotate_90'"),
        ({"views": ["zoom_big"]}, "zoom needs a positive factor"),
    ],
)
def test_bad_tta_config_is_a_user_error(tta: dict, message: str) -> None:
    with pytest.raises(CnnZooError, match=message):
        TTA(**tta)
