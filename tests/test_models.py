"""Parameter counts and output shapes of the networks, against the course's Keras summaries."""

from __future__ import annotations

import pytest
import torch

from cnn_zoo.models import build_net
from cnn_zoo.runtime.errors import CnnZooError


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


MNIST_FACTS = {"num_classes": 10, "in_channels": 1, "input_size": [28, 28]}


def test_mnist_cnn_has_the_course_parameter_count() -> None:
    net = build_net(
        {"_target_": "cnn_zoo.models.small_cnn.SmallCNN", "filters": [32, 64, 64], "dense": [64]}, MNIST_FACTS
    )
    assert count(net) == 93_322
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_catsdogs_small_cnn_has_the_course_parameter_count() -> None:
    facts = {"num_classes": 2, "in_channels": 3, "input_size": [180, 180]}
    net = build_net(
        {"_target_": "cnn_zoo.models.small_cnn.SmallCNN", "filters": [32, 64, 128, 256, 256], "dense": []},
        facts,
    )
    assert count(net) == 991_041
    assert net(torch.zeros(2, 3, 180, 180)).shape == (2, 1)  # binary: one logit


def test_batch_norm_variant_replaces_conv_biases_by_normalisation() -> None:
    facts = {"num_classes": 2, "in_channels": 3, "input_size": [150, 150]}
    spec = {"_target_": "cnn_zoo.models.small_cnn.SmallCNN", "filters": [32, 64, 128, 256, 256], "dense": []}
    plain, normed = build_net(spec, facts), build_net({**spec, "batch_norm": True}, facts)
    norms = [m for m in normed.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [n.num_features for n in norms] == [32, 64, 128, 256, 256]
    convs = [m for m in normed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    # each layer: minus its conv bias (width), plus BN scale and shift (2 x width)
    assert count(normed) == count(plain) + sum(n.num_features for n in norms)
    assert normed(torch.zeros(2, 3, 150, 150)).shape == (2, 1)


def test_images_too_small_for_the_network_are_a_config_error() -> None:
    facts = {"num_classes": 2, "in_channels": 3, "input_size": [48, 48]}
    spec = {"_target_": "cnn_zoo.models.small_cnn.SmallCNN", "filters": [32, 64, 128, 256, 256], "dense": []}
    with pytest.raises(CnnZooError, match="images of 48x48 pixels are too small for model.net.*data.image_size"):
        build_net(spec, facts)


def test_lenet_uses_5x5_convolutions_and_average_pooling() -> None:
    net = build_net({"_target_": "cnn_zoo.models.lenet.LeNet"}, MNIST_FACTS)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert [c.out_channels for c in convs] == sorted(c.out_channels for c in convs)
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in net.modules())
    assert net(torch.zeros(4, 1, 28, 28)).shape == (4, 10)


def test_unknown_network_is_a_user_error() -> None:
    with pytest.raises(CnnZooError, match="cannot be imported"):
        build_net({"_target_": "cnn_zoo.models.nope.Nope"}, MNIST_FACTS)


def test_bad_network_value_is_a_user_error() -> None:
    with pytest.raises(CnnZooError, match="activation must be one of"):
        build_net({"_target_": "cnn_zoo.models.lenet.LeNet", "activation_name": "swishy"}, MNIST_FACTS)


@pytest.mark.parametrize(("activation_name", "batch_norm"), [("relu", False), ("relu", True), ("elu", False)])
def test_pooling_before_a_monotone_activation_is_the_same_network(activation_name: str, batch_norm: bool) -> None:
    """SmallCNN pools before a monotone activation: values, gradients and parameter names as Conv-act-Pool."""
    from torch import nn

    from cnn_zoo.models.small_cnn import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN(filters=(8, 16, 16), dense=(32,), activation_name=activation_name, batch_norm=batch_norm)
    swapped = list(net.features)
    reference = list(swapped)
    for i, module in enumerate(swapped[:-1]):
        if isinstance(module, nn.MaxPool2d):  # the course's order: the activation, then the pooling
            reference[i], reference[i + 1] = swapped[i + 1], module
    assert reference != swapped
    x = torch.randn(4, 1, 28, 28)
    outputs, grads = [], []
    for layers in (swapped, reference):
        net.features = nn.Sequential(*layers)
        net.zero_grad()
        out = net(x)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    assert torch.equal(outputs[0], outputs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    # checkpoints of the earlier Conv-act-Pool order load unchanged: the same parameter names
    convs = [0, 4, 8] if batch_norm else [0, 3, 6]
    assert [i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)] == convs


def test_a_non_monotone_activation_keeps_the_courses_order() -> None:
    from torch import nn

    from cnn_zoo.models.small_cnn import SmallCNN

    kinds = [type(m) for m in SmallCNN(filters=(8, 16), activation_name="gelu").features]
    assert kinds == [nn.Conv2d, nn.GELU, nn.MaxPool2d, nn.Conv2d, nn.GELU]


def test_max_pooling_moves_before_a_monotone_activation_only() -> None:
    from torch import nn

    from cnn_zoo.models.layers import activation_and_pool

    x = torch.randn(3, 4, 50, requires_grad=True)
    pooled_first = nn.Sequential(*activation_and_pool(nn.ReLU(), nn.MaxPool1d(5)))
    assert [type(m) for m in pooled_first] == [nn.MaxPool1d, nn.ReLU]
    reference = nn.Sequential(nn.ReLU(), nn.MaxPool1d(5))
    (a,) = torch.autograd.grad(pooled_first(x).sum(), x)
    (b,) = torch.autograd.grad(reference(x).sum(), x)
    assert torch.equal(pooled_first(x), reference(x)) and torch.equal(a, b)
    assert [type(m) for m in activation_and_pool(nn.ReLU(), nn.AvgPool2d(2))] == [nn.ReLU, nn.AvgPool2d]
    assert [type(m) for m in activation_and_pool(nn.GELU(), nn.MaxPool1d(2))] == [nn.GELU, nn.MaxPool1d]


def test_flatten_sends_its_gradient_back_channels_last() -> None:
    """The pooling before the dense head gets its gradient in its own NHWC layout, not as an NCHW view (ATen's
    slow mixed-layout path); the values are those of nn.Flatten."""
    from cnn_zoo.models.layers import Flatten

    layouts: list[bool] = []

    class RecordGradLayout(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: torch.Tensor) -> torch.Tensor:
            return x.clone(memory_format=torch.channels_last)

        @staticmethod
        def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
            layouts.append(grad.is_contiguous(memory_format=torch.channels_last))
            return grad

    x = torch.randn(4, 3, 5, 6, requires_grad=True)
    weights = torch.randn(90)
    grads = []
    for flatten in (torch.nn.Flatten(), Flatten()):
        out = flatten(RecordGradLayout.apply(x))
        torch.testing.assert_close(out, torch.nn.Flatten()(x))
        (out * weights).sum().backward()
        grads.append(x.grad)
        x.grad = None
    assert layouts == [False, True]
    torch.testing.assert_close(grads[0], grads[1])
    assert not Flatten()(torch.randn(2, 3, 4, 4)).requires_grad  # no hook where there is no gradient
