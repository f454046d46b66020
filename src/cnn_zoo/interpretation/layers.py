"""Which layers of a network can be looked into, by the names `model.named_modules()` gives them."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from torch import Tensor, nn

from cnn_zoo.models.interfaces import BackboneWithoutGradients
from cnn_zoo.runtime.errors import CnnZooError

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


class NoSpatialLayer(CnnZooError):
    """The network has no layer with a spatial output (a vision transformer): Grad-CAM does not apply."""


def feature_stage(net: nn.Module) -> tuple[str, nn.Module] | None:
    """A network's own choice (`gradcam_layer`, e.g. the deepest spatial stage of timm's `feature_info`), by its
    name under `net`; None when it makes none. Raises `NoSpatialLayer` when it says no stage is spatial."""
    inner = getattr(net, "net", None)
    owner, prefix = (inner, "net.") if isinstance(inner, nn.Module) and hasattr(inner, "gradcam_layer") else (net, "")
    if not hasattr(owner, "gradcam_layer"):
        return None
    spec = getattr(net, "spec", None)
    size = list(spec.input_shape[1:]) if spec is not None else [224, 224]
    found = owner.gradcam_layer(size)
    if found is None:
        raise NoSpatialLayer(
            f"{getattr(owner, 'name', type(owner).__name__)} has no feature stage with a spatial output (tokens, as "
            "a vision transformer's): Grad-CAM does not apply; integrated gradients over the pixels do"
        )
    return prefix + found[0], found[1]


def find_layer(net: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """`name` (any module), or the network's deepest spatial feature stage (`feature_stage`), else the last
    convolution's output: Grad-CAM's usual layer (the most semantic, still spatial)."""
    convs = conv_layers(net)
    if name is None or name == "":
        stage = feature_stage(net)
        if stage is not None:
            return stage
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
