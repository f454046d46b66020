"""Which layers of a network can be looked into, by the names `model.named_modules()` gives them."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from torch import Tensor, nn

from cnn_zoo.errors import CnnZooError
from cnn_zoo.models.interfaces import BackboneWithoutGradients

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d)


def conv_layers(net: nn.Module) -> dict[str, nn.Module]:
    """Every convolution, in forward order (module registration order), by its dotted name."""
    return {name: module for name, module in net.named_modules() if isinstance(module, CONVOLUTIONS)}


ACTIVATIONS = (nn.ReLU, nn.GELU, nn.ELU, nn.Tanh, nn.LeakyReLU, nn.SiLU)


def last_conv_output(net: nn.Module, convs: dict[str, nn.Module]) -> tuple[str, nn.Module]:
    """The last convolution's block output: the activation that follows it in the same container (Conv-BN-ReLU,
    as a Keras Conv2D(activation="relu") layer outputs), else the convolution itself (e.g. inside a ResNet block)."""
    name, conv = next(reversed(convs.items()))
    parent_name, _, child = name.rpartition(".")
    parent = dict(net.named_modules())[parent_name]
    siblings = list(parent.named_children())
    position = [n for n, _ in siblings].index(child)
    for sibling, module in siblings[position + 1 :]:
        if isinstance(module, CONVOLUTIONS):
            break
        if isinstance(module, ACTIVATIONS):
            return f"{parent_name}.{sibling}" if parent_name else sibling, module
    return name, conv


def find_layer(net: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """`name` (any module), or the last convolution's output: Grad-CAM's usual layer (the most semantic, still
    spatial)."""
    convs = conv_layers(net)
    if name is None or name == "":
        if not convs:
            raise CnnZooError(f"{type(net).__name__} has no convolution to explain")
        return last_conv_output(net, convs)
    modules = dict(net.named_modules())
    if str(name) not in modules:
        raise CnnZooError(f"layer={name!r} is not a layer of {type(net).__name__}; convolutions: {list(convs)}")
    return str(name), modules[str(name)]


class ClassScores(nn.Module):
    """The classifier's logits as one score per class: a binary net's single logit z becomes (-z, z).

    Attribution methods then take a class index for every checkpoint, and class 0 of a binary model is
    explained by the evidence against class 1, as its probability 1 - sigmoid(z) = sigmoid(-z) says.
    """

    def __init__(self, model: nn.Module, binary: bool) -> None:
        super().__init__()
        self.model = model
        self.binary = binary

    def forward(self, x: Tensor) -> Tensor:
        return self.scores(self.model(x).float())

    def scores(self, logits: Tensor) -> Tensor:
        return logits.reshape(len(logits), 1) * logits.new_tensor([-1.0, 1.0]) if self.binary else logits


def gradients_through(net: nn.Module) -> AbstractContextManager[None]:
    """Autograd through every layer of `net` inside the block: a frozen transfer backbone normally runs without it
    (`BackboneWithoutGradients`); any other network already does."""
    return net.gradients_through() if isinstance(net, BackboneWithoutGradients) else nullcontext()
