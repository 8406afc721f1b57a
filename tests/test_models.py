"""ticketlab.models: sizes, init statistics, determinism, and which parameters pruning may touch."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from ticketlab import models


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lenet_300_100_has_the_papers_parameter_count():
    # 784·300 + 300 + 300·100 + 100 + 100·10 + 10, the count Frankle & Carbin quote.
    assert n_params(models.lenet_300_100()) == 266_610
    names = [n for n, _ in models.lenet_300_100().named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "out.weight", "out.bias"]


@pytest.mark.parametrize("hidden", [1, 2, 7])
def test_xor_mlp_shape_and_count(hidden):
    model = models.xor_mlp(hidden=hidden)
    assert n_params(model) == 2 * hidden + hidden + hidden + 1
    assert [name for name, _ in model.named_children()] == ["fc1", "act1", "out"]
    assert model(torch.zeros(5, 2)).shape == (5, 1)


def test_xor_mlp_activation_choice():
    assert isinstance(models.xor_mlp(activation="tanh").act1, nn.Tanh)
    assert isinstance(models.xor_mlp(activation="relu").act1, nn.ReLU)
    with pytest.raises(ValueError, match="activation"):
        models.xor_mlp(activation="gelu")
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        models.xor_mlp(hidden=0)


def test_conv4_output_shape():
    model = models.conv4(width=4)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def resnet_param_count(depth: int, width: int, in_channels: int = 1) -> int:
    """Independent count for the CIFAR ResNet: convs (no bias), BN γ/β, projections, the head."""
    n = (depth - 2) // 6
    total = in_channels * width * 9 + 2 * width  # stem conv + BN
    cin = width
    for cout in (width, 2 * width, 4 * width):
        for b in range(n):
            total += cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout
            if b == 0 and cin != cout:
                total += cin * cout + 2 * cout  # 1×1 projection + BN
            cin = cout
    return total + cin * 10 + 10


@pytest.mark.parametrize(("depth", "width"), [(8, 4), (14, 2)])
def test_resnet_parameter_count_and_output(depth, width):
    model = models.resnet(depth=depth, width=width)
    assert n_params(model) == resnet_param_count(depth, width)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("depth", [2, 7, 9, 10, 13])
def test_resnet_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match=r"6n \+ 2"):
        models.resnet(depth=depth)


def test_unknown_init_is_rejected():
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        models.lenet_300_100(init="xavier")


@pytest.mark.parametrize("init", models.INITS)
def test_init_statistics_match_the_formulas(init):
    model = models.lenet_300_100(init=init, seed=1)
    for name, (fan_in, fan_out) in {
        "fc1": (784, 300),
        "fc2": (300, 100),
        "out": (100, 10),
    }.items():
        layer = getattr(model, name)
        expected = math.sqrt(2 / (fan_in + fan_out) if init == "glorot_normal" else 2 / fan_in)
        w = layer.weight.detach()
        # Sample std of n normals has relative standard error 1/sqrt(2n): 1,000 weights → 2.2 %.
        assert w.std().item() == pytest.approx(expected, rel=5 / math.sqrt(2 * w.numel()))
        assert abs(w.mean().item()) < 5 * expected / math.sqrt(w.numel())
        assert torch.count_nonzero(layer.bias) == 0


def test_conv_fans_include_the_receptive_field():
    model = models.conv4(init="kaiming_normal", width=16, seed=0)
    w = model.conv2.weight.detach()  # (16, 16, 3, 3): fan_in = 16·9
    assert w.std().item() == pytest.approx(math.sqrt(2 / (16 * 9)), rel=0.05)
    model = models.conv4(init="glorot_normal", width=16, seed=0)
    w = model.conv3.weight.detach()  # (32, 16, 3, 3): fan_in 16·9, fan_out 32·9
    assert w.std().item() == pytest.approx(math.sqrt(2 / (16 * 9 + 32 * 9)), rel=0.05)


def test_resnet_batchnorm_starts_at_identity():
    model = models.resnet(depth=8, width=4, seed=3)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


@pytest.mark.parametrize(
    "build",
    [
        lambda seed: models.xor_mlp(hidden=3, seed=seed),
        lambda seed: models.lenet_300_100(seed=seed),
        lambda seed: models.conv4(width=4, seed=seed),
        lambda seed: models.resnet(width=4, seed=seed),
    ],
)
def test_same_seed_is_bit_identical_and_other_seeds_differ(build):
    torch.manual_seed(0)
    a = build(5).state_dict()
    torch.manual_seed(1)  # the global RNG must play no part
    torch.rand(100)
    b = build(5).state_dict()
    c = build(6).state_dict()
    assert a.keys() == b.keys() == c.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    weights = [n for n in a if n.endswith("weight") and a[n].dim() > 1]
    assert all(not torch.equal(a[n], c[n]) for n in weights)


def test_init_draws_on_cpu_so_every_device_gets_the_same_weights(device):
    cpu = models.xor_mlp(hidden=4, seed=2)
    moved = models.init_(models.xor_mlp(hidden=4, seed=99).to(device), seed=2)
    for (name, a), b in zip(cpu.state_dict().items(), moved.state_dict().values(), strict=True):
        assert b.device.type == device.type
        assert torch.equal(a, b.cpu()), name


def test_init_follows_torch_generator_draws():
    # Oracle: the documented recipe, written out by hand for xor_mlp(hidden=3).
    gen = torch.Generator().manual_seed(4)
    fc1 = torch.randn((3, 2), generator=gen) * math.sqrt(2 / (2 + 3))
    out = torch.randn((1, 3), generator=gen) * math.sqrt(2 / (3 + 1))
    model = models.xor_mlp(hidden=3, seed=4)
    assert torch.equal(model.fc1.weight.detach(), fc1)
    assert torch.equal(model.out.weight.detach(), out)


def test_prunable_names_defaults_to_linear_and_conv_weights():
    assert models.prunable_names(models.lenet_300_100()) == [
        "fc1.weight",
        "fc2.weight",
        "out.weight",
    ]
    names = models.prunable_names(models.resnet(width=2))
    assert names[0] == "conv.weight" and names[-1] == "out.weight"
    assert "block2_0.shortcut.conv.weight" in names
    assert not any("bn" in n or n.endswith("bias") for n in names)


def test_prunable_names_includes_bias_and_batchnorm_on_request():
    model = models.resnet(width=2)
    params = [n for n, _ in model.named_parameters()]
    with_bias = models.prunable_names(model, include_bias=True)
    assert "out.bias" in with_bias and not any("bn" in n for n in with_bias)
    everything = models.prunable_names(model, include_bias=True, include_batchnorm=True)
    assert everything == params  # every parameter, in named_parameters() order
    bn_only = set(models.prunable_names(model, include_batchnorm=True)) - set(
        models.prunable_names(model)
    )
    assert bn_only == {n for n in params if ".bn" in n or n.startswith("bn.")}


def test_batchnorm_weight_is_never_taken_by_its_name():
    # A BatchNorm whose parameter is literally called "weight" must not look prunable.
    model = nn.Sequential(OrderedDict(fc=nn.Linear(3, 4), norm=nn.BatchNorm1d(4)))
    assert models.prunable_names(model) == ["fc.weight"]
    assert models.prunable_names(model, include_batchnorm=True) == [
        "fc.weight",
        "norm.weight",
        "norm.bias",
    ]
    no_affine = nn.Sequential(OrderedDict(fc=nn.Linear(3, 4), norm=nn.BatchNorm1d(4, affine=False)))
    assert models.prunable_names(no_affine, include_batchnorm=True) == ["fc.weight"]


def test_output_name():
    assert models.output_name(models.lenet_300_100()) == "out.weight"
    assert models.output_name(models.conv4(width=2)) == "out.weight"
    assert models.output_name(models.resnet(width=2)) == "out.weight"
    assert models.output_name(nn.Linear(2, 2)) == "weight"
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        models.output_name(nn.Sequential(nn.Conv2d(1, 1, 3)))
