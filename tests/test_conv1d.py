"""The Conv1D family: the notes' parameter counts, shapes, Keras 'same' padding, build-time errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cnn_zoo.cli.config import CONFIG_DIR
from cnn_zoo.models import build_net
from cnn_zoo.models.conv1d import ChannelsLastConv1d, Conv1DNet
from cnn_zoo.runtime.errors import CnnZooError


def net_config(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{name}.yaml").net)


def parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_text_model_matches_the_notes_parameter_count_and_output() -> None:
    facts = {"num_classes": 2, "vocab_size": 10000, "input_shape": [500], "input_dtype": "int64"}
    net = build_net(net_config("conv1d_text"), facts)
    # Keras summary of the notes: Embedding 1,280,000 + Conv1D 28,704 + Conv1D 7,200 + Dense 33
    assert parameters(net) == 1_315_937
    assert parameters(net.embedding) == 1_280_000
    out = net(torch.randint(0, 10000, (3, 500)))
    assert out.shape == (3, 1)  # binary: one logit
    # 500 -conv7-> 494 -pool5-> 98 -conv7-> 92
    assert net.features(torch.zeros(1, 128, 500)).shape == (1, 32, 92)


def test_telemetry_model_takes_its_channels_from_the_data() -> None:
    window = build_net(net_config("conv1d_telemetry"), {"num_classes": 3, "in_channels": 15, "input_shape": [15, 64]})
    # Conv1D(256,4): 15*256*4+256; Conv1D(128,2): 256*128*2+128; Dense(3): 128*3+3
    assert parameters(window) == 15_616 + 65_664 + 387
    assert window(torch.randn(5, 15, 64)).shape == (5, 3)
    # 'same' keeps the length, only the pooling halves it
    assert window.features(torch.zeros(1, 15, 64)).shape == (1, 128, 32)
    row = build_net(net_config("conv1d_telemetry"), {"num_classes": 2, "in_channels": 1, "input_shape": [1, 15]})
    assert row(torch.randn(4, 1, 15)).shape == (4, 1)
    assert parameters(row) == (1 * 256 * 4 + 256) + 65_664 + 129


def test_same_padding_with_an_even_kernel_pads_like_keras() -> None:
    """Keras 'same', kernel 4: one zero on the left, two on the right; output position i sees inputs i-1..i+2."""
    net = Conv1DNet(in_channels=1, filters=[1], kernel_size=4, padding="same", num_outputs=1)
    conv = net.features[1]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0, 10.0, 100.0, 1000.0]]]))
        conv.bias.zero_()
    out = net.features[:2](torch.tensor([[[1.0, 2.0, 3.0]]]))
    # position 0: [0, 1, 2, 3]; position 2: [2, 3, 0, 0]
    assert out.flatten().tolist() == [3210.0, 321.0, 32.0]


def test_last_step_pooling_reads_the_final_position_and_max_last_keeps_both() -> None:
    features = torch.tensor([[[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]]])  # (N=1, C=2, L=3)
    last = Conv1DNet(in_channels=2, filters=[2], kernel_size=1, global_pool="last", num_outputs=1)
    both = Conv1DNet(in_channels=2, filters=[2], kernel_size=1, global_pool="max_last", num_outputs=1)
    assert last.pool(features).flatten().tolist() == [2.0, 3.0]
    assert both.pool(features).flatten().tolist() == [5.0, 3.0, 2.0, 3.0]
    # the head is sized for the pooled width: 2 channels in, 4 after max_last
    assert last.head[-1].in_features == 2 and both.head[-1].in_features == 4
    assert both(torch.randn(3, 2, 8)).shape == (3, 1)


def test_dense_layers_and_dropout_are_configurable() -> None:
    net = Conv1DNet(
        in_channels=2, filters=[4, 4], kernel_size=[3, 2], pool_size=2, dense=[8], dropout=0.5, num_outputs=3
    )
    kinds = [type(layer).__name__ for layer in net.head]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    assert net(torch.randn(2, 2, 20)).shape == (2, 3)


def test_channel_embedding_dropout_drops_whole_embedding_dimensions_in_training_only() -> None:
    torch.manual_seed(0)
    net = Conv1DNet(
        vocab_size=20,
        embedding_dim=16,
        filters=[4],
        kernel_size=3,
        embedding_dropout=0.5,
        embedding_dropout_mode="channel",
    )
    tokens = torch.randint(1, 20, (2, 12))
    embedded = net.embedding_dropout(net.embedding(tokens).transpose(1, 2))  # (N, E, L)
    dropped = (embedded == 0).all(dim=2)  # whole dimensions zero along the review
    assert dropped.any() and not dropped.all()
    assert ((embedded == 0).any(dim=2) == dropped).all()  # nothing dropped word by word
    net.eval()
    assert torch.equal(net(tokens), net(tokens))


def test_element_embedding_dropout_is_the_default_mode_and_is_off_at_zero() -> None:
    assert isinstance(
        Conv1DNet(vocab_size=20, embedding_dim=8, filters=[4], kernel_size=3).embedding_dropout, torch.nn.Identity
    )
    layer = Conv1DNet(vocab_size=20, embedding_dim=8, filters=[4], kernel_size=3, embedding_dropout=0.2)
    assert type(layer.embedding_dropout) is torch.nn.Dropout and layer.embedding_dropout.p == 0.2


def test_sequences_too_short_for_the_stack_are_a_config_error() -> None:
    with pytest.raises(CnnZooError, match="length 10 are too short"):
        build_net(net_config("conv1d_text"), {"num_classes": 2, "vocab_size": 50, "input_shape": [10]})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": [8]}, "needs in_channels"),
        ({"vocab_size": 9, "embedding_dim": 8, "filters": [8], "embedding_dropout": 1.0}, "embedding_dropout must"),
        (
            {
                "vocab_size": 9,
                "embedding_dim": 8,
                "filters": [8],
                "embedding_dropout": 0.1,
                "embedding_dropout_mode": "word",
            },
            "embedding_dropout_mode must",
        ),
        ({"embedding_dim": 8, "filters": [8]}, "needs vocab_size"),
        ({"in_channels": 2, "filters": [8, 8], "kernel_size": [3]}, "kernel_size must be"),
        ({"in_channels": 2, "filters": [8], "padding": "causal"}, "padding must be"),
        ({"in_channels": 2, "filters": [8], "global_pool": "sum"}, "global_pool must be"),
    ],
)
def test_bad_model_settings_name_the_option(kwargs: dict, message: str) -> None:
    with pytest.raises(CnnZooError, match=message):
        Conv1DNet(num_outputs=1, **kwargs)


@pytest.mark.parametrize("padding", [0, 3])
def test_channels_last_conv1d_computes_what_conv1d_does_on_an_embeddings_layout(padding: int) -> None:
    """The (N, L, C)-in-memory input of an embedding, transposed, goes through the 1-row Conv2d path: same values,
    same gradients, the same parameters (so checkpoints load either way), and the layout kept for the next layer."""
    torch.manual_seed(0)
    fast = ChannelsLastConv1d(16, 8, 5, padding=padding)
    reference = torch.nn.Conv1d(16, 8, 5, padding=padding)
    reference.load_state_dict(fast.state_dict())
    embedded = torch.randn(3, 40, 16, requires_grad=True)
    out, expected = fast(embedded.transpose(1, 2)), reference(embedded.transpose(1, 2))
    assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-5)
    assert out.stride(1) == 1  # channels last again: the next convolution takes the same path
    (grad_fast,) = torch.autograd.grad(out.square().sum(), embedded)
    (grad_reference,) = torch.autograd.grad(expected.square().sum(), embedded)
    assert torch.allclose(grad_fast, grad_reference, atol=1e-4)
    contiguous = torch.randn(3, 16, 40)  # the usual (N, C, L) layout: plain Conv1d
    assert torch.allclose(fast(contiguous), reference(contiguous), atol=1e-5)
