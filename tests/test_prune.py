"""Tests for ticketlab.prune, against hand computations and independent reference implementations.

The references below (``naive_magnitude``, ``naive_snip``, torch.nn.utils.prune) work on Python
lists or through a different code path, so they share no code with ``ticketlab.prune``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections import OrderedDict
from collections.abc import Mapping

import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as torch_prune
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab import prune
from ticketlab.data import Dataset, Split, xor
from ticketlab.masks import Mask, MaskError
from ticketlab.models import init_, lenet_300_100, xor_mlp
from ticketlab.training import train

# fc1 (4 × 3) and out (2 × 4) weights whose magnitudes are all distinct: hand-checkable ranks.
FC1 = [[0.5, -0.1, 0.9], [-0.3, 0.7, 0.2], [0.05, -0.8, 0.6], [0.4, -0.25, 1.0]]
OUT = [[1.0, -2.0, 3.0, -4.0], [0.5, -0.6, 7.0, 8.0]]


def net(fc1=FC1, out=OUT, device="cpu") -> nn.Sequential:
    """fc1 → ReLU → out with the given weights (shapes taken from them) and zero biases."""
    fc1, out = torch.tensor(fc1), torch.tensor(out)
    model = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(fc1.shape[1], fc1.shape[0]),
            act=nn.ReLU(),
            out=nn.Linear(out.shape[1], out.shape[0]),
        )
    )
    with torch.no_grad():
        model.fc1.weight.copy_(fc1)
        model.out.weight.copy_(out)
        model.fc1.bias.zero_()
        model.out.bias.zero_()
    return model.to(device)


def mlp3(seed: int, device="cpu") -> nn.Sequential:
    """A LeNet-shaped 40-30-20-10 MLP: 1,200 + 600 + 200 prunable weights, random values."""
    layers = OrderedDict(
        fc1=nn.Linear(40, 30), relu1=nn.ReLU(), fc2=nn.Linear(30, 20), relu2=nn.ReLU(),
        out=nn.Linear(20, 10),
    )  # fmt: skip
    return init_(nn.Sequential(layers), seed=seed).to(device)


def as_lists(mask: Mask) -> dict[str, list]:
    return {name: keep.tolist() for name, keep in mask.items()}


def kept_counts(mask: Mask) -> dict[str, int]:
    return {name: int(keep.sum()) for name, keep in mask.items()}


def snapshot(model: nn.Module, mask: Mask) -> tuple[dict, dict]:
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        {k: v.clone() for k, v in mask.items()},
    )


def assert_unchanged(model: nn.Module, mask: Mask, before: tuple[dict, dict]) -> None:
    weights, keeps = before
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, keeps[k]) for k, v in mask.items())
    assert all(p.grad is None for p in model.parameters())


# -- the reference implementation of magnitude pruning, in plain Python -------------------------


def naive_magnitude(model, keep: dict[str, list[bool]], fraction, scope="layerwise", rates=None):
    """Remove round-half-up(rate × kept) smallest |w| per group; ties: earlier position first."""
    rates = rates or {}
    weights = {
        n: [abs(w) for w in model.get_parameter(n).detach().flatten().tolist()] for n in keep
    }
    if scope == "layerwise":
        groups = [([n], rates.get(n, fraction)) for n in keep]
    else:
        groups = [([n], r) for n, r in rates.items()]
        groups.append(([n for n in keep if n not in rates], fraction))
    new = {n: list(k) for n, k in keep.items()}
    for names, rate in groups:
        entries = [
            (weights[n][i], position, n, i)
            for position, (n, i) in enumerate((n, i) for n in names for i in range(len(keep[n])))
            if keep[n][i]
        ]
        entries.sort(key=lambda e: (e[0], e[1]))
        for _, _, n, i in entries[: math.floor(rate * len(entries) + 0.5)]:
            new[n][i] = False
    return new


def flat_lists(mask: Mask) -> dict[str, list[bool]]:
    return {name: keep.flatten().tolist() for name, keep in mask.items()}


# -- magnitude: hand-computed masks --------------------------------------------------------------


def test_magnitude_layerwise_removes_the_smallest_weights_of_each_layer(device):
    model = net(device=device)
    mask = prune.magnitude(model, Mask.ones(model), 0.25)
    # fc1: floor(0.25·12 + 0.5) = 3 go: 0.05, 0.1, 0.2. out: floor(0.25·8 + 0.5) = 2 go: 0.5, 0.6.
    assert as_lists(mask) == {
        "fc1.weight": [[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]],
        "out.weight": [[1, 1, 1, 1], [0, 0, 1, 1]],
    }


def test_global_scope_ranks_across_layers_so_small_layers_lose_more(device):
    small = [[w * 0.01 for w in row] for row in FC1]  # all below the smallest |out| = 0.5
    model = net(fc1=small, device=device)
    glob = prune.magnitude(model, Mask.ones(model), 0.5, scope="global")
    # 10 of 20 go, all from fc1: only its two largest (1.0 and 0.9, times 0.01) survive.
    assert as_lists(glob) == {
        "fc1.weight": [[0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 1]],
        "out.weight": [[1, 1, 1, 1], [1, 1, 1, 1]],
    }
    layerwise = prune.magnitude(model, Mask.ones(model), 0.5)
    assert kept_counts(layerwise) == {"fc1.weight": 6, "out.weight": 4}


def test_ties_go_to_the_lower_flat_index_first(device):
    signs = [[(-1.0) ** (3 * r + c) for c in range(3)] for r in range(4)]  # |w| = 1 everywhere
    model = net(fc1=signs, out=[[1.0] * 4, [-1.0] * 4], device=device)
    layerwise = prune.magnitude(model, Mask.ones(model), 0.25)
    assert as_lists(layerwise) == {
        "fc1.weight": [[0, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]],
        "out.weight": [[0, 0, 1, 1], [1, 1, 1, 1]],
    }
    # Global: 5 of the 20 go, in mask order: the first five of whichever layer comes first.
    glob = prune.magnitude(model, Mask.ones(model), 0.25, scope="global")
    assert kept_counts(glob) == {"fc1.weight": 7, "out.weight": 8}
    assert glob["fc1.weight"].flatten().tolist() == [0] * 5 + [1] * 7
    ones = Mask.ones(model)
    reordered = Mask({"out.weight": ones["out.weight"], "fc1.weight": ones["fc1.weight"]})
    glob = prune.magnitude(model, reordered, 0.25, scope="global")
    assert glob["out.weight"].flatten().tolist() == [0] * 5 + [1] * 3
    assert prune.magnitude(model, reordered, 0.25, scope="global") == glob


def sorted_oracle(scores: list[float], keep: list[bool], n_keep: int) -> list[bool]:
    """Keep the n_keep best kept entries: Python's sort by (score, index), NaN counted as 0."""
    clean = [0.0 if math.isnan(v) else v for v in scores]
    kept = sorted((clean[i], i) for i in range(len(clean)) if keep[i])
    survivors = {i for _, i in kept[max(len(kept) - max(n_keep, 0), 0) :]} if n_keep > 0 else set()
    return [i in survivors for i in range(len(clean))]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3e38, -3e38, 1e-40, math.nan]),
        min_size=1,
        max_size=40,
    ),
    keep_bits=st.lists(st.booleans(), min_size=40, max_size=40),
    n_keep=st.integers(-2, 45),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]),
    as_tensor=st.booleans(),
)
def test_ranking_core_matches_a_python_sort(values, keep_bits, n_keep, dtype, as_tensor):
    """Ties, signed zeros, huge, tiny and NaN scores, every n_keep: the fast int64-key path
    (float32/float16) and the stable-sort path (float64) agree with Python's sort."""
    scores = torch.tensor(values, dtype=dtype)
    keep = torch.tensor(keep_bits[: len(values)])
    expected = sorted_oracle(scores.double().tolist(), keep.tolist(), n_keep)
    count = torch.tensor(n_keep) if as_tensor else n_keep
    assert prune._top(scores, keep, count).tolist() == expected


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.0, 1.0, 1.0, 2.0, 0.5, 3.0, math.nan]), min_size=1,
                    max_size=30),
    density=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]),
)  # fmt: skip
def test_top_ranks_as_every_pruning_function_does(values, density):
    """``prune.top`` (the supermask lab's ranking) against the same Python sort as ``_top``."""
    scores = {"w": torch.tensor(values).view(1, -1)}
    n_keep = math.floor(density * len(values) + 0.5)
    expected = sorted_oracle(values, [True] * len(values), n_keep)
    assert prune.top(scores, {"w": density})["w"].flatten().tolist() == expected


def test_top_needs_the_same_layers_and_densities_in_range():
    scores = {"a": torch.ones(3), "b": torch.ones(2)}
    with pytest.raises(ValueError, match=r"same layers; they differ in \['b'\]"):
        prune.top(scores, {"a": 0.5})
    with pytest.raises(ValueError, match=r"densities\['a'\] must be a number in \[0, 1\]"):
        prune.top(scores, {"a": 1.5, "b": 0.5})


def test_layer_density_is_what_iterative_pruning_leaves():
    # Iterate the rates by hand: after k rounds the base layers keep 0.8^k, the other 0.9^k.
    for k in (1, 5, 13):
        assert prune.layer_density(0.8**k, 0.1, 0.2) == pytest.approx(0.9**k, rel=1e-12)
    assert prune.layer_density(0.02, 0.0, 0.2) == 1.0  # rate 0: never pruned
    with pytest.raises(ValueError, match=r"rate must lie in \(0, 1\)"):
        prune.layer_density(0.5, 0.1, 0.0)


def test_iterated_rounding_is_round_half_up_of_the_remaining_weights(device):
    gen = torch.Generator().manual_seed(0)
    fc1, out = torch.randn(5, 2, generator=gen), torch.randn(3, 5, generator=gen)
    model = net(fc1.tolist(), out.tolist(), device=device)
    mask, kept = Mask.ones(model), []
    for _ in range(7):
        kept.append(tuple(kept_counts(mask).values()))
        mask = prune.magnitude(model, mask, 0.25)
    # 10 → 7 since 0.25·10 + 0.5 = 3 (round half to even would remove 2); 2 → 1 since 0.5 → 1.
    assert [fc1 for fc1, _ in kept] == [10, 7, 5, 4, 3, 2, 1]
    assert [out for _, out in kept] == [15, 11, 8, 6, 4, 3, 2]


def test_density_after_k_rounds_follows_the_formula_and_about_0_8_to_the_k():
    model = mlp3(1)
    mask, p = Mask.ones(model), 0.2
    expected = {name: keep.numel() for name, keep in mask.items()}
    for k in range(1, 6):
        mask = prune.magnitude(model, mask, p)
        expected = {name: n - math.floor(p * n + 0.5) for name, n in expected.items()}
        assert kept_counts(mask) == expected
        assert mask.density == pytest.approx((1 - p) ** k, abs=k / 1000)


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_layer_rates_prune_the_output_at_its_own_rate(device, scope):
    model = mlp3(2, device)
    mask, p = Mask.ones(model), 0.2
    never = Mask.ones(model)
    out = model.out.weight.numel()
    for _ in range(3):
        mask = prune.magnitude(model, mask, p, scope=scope, layer_rates={"out.weight": p / 2})
        out -= math.floor(p / 2 * out + 0.5)
        assert kept_counts(mask)["out.weight"] == out
        never = prune.magnitude(model, never, p, scope=scope, layer_rates={"out.weight": 0})
        assert never["out.weight"].all()
    hidden = ["fc1.weight", "fc2.weight"]
    if scope == "global":  # the hidden layers share one budget
        total = 1_200 + 600
        for _ in range(3):
            total -= math.floor(p * total + 0.5)
        assert sum(kept_counts(mask)[n] for n in hidden) == total
        assert kept_counts(mask)["fc1.weight"] / 1_200 != kept_counts(mask)["fc2.weight"] / 600


def test_magnitude_agrees_with_torch_prune_l1_unstructured(device):
    model = mlp3(3, device)
    reference = copy.deepcopy(model)
    mask = Mask.ones(model)
    for _ in range(3):
        counts = {n: math.floor(0.2 * c + 0.5) for n, c in kept_counts(mask).items()}
        mask = prune.magnitude(model, mask, 0.2)
        for name, module in [
            ("fc1", reference.fc1),
            ("fc2", reference.fc2),
            ("out", reference.out),
        ]:
            torch_prune.l1_unstructured(module, "weight", amount=counts[f"{name}.weight"])
    for name in mask:
        module = reference.get_submodule(name.removesuffix(".weight"))
        assert torch.equal(mask[name], module.weight_mask.bool())


def test_global_magnitude_agrees_with_torch_prune_global_unstructured(device):
    model = mlp3(4, device)
    reference = copy.deepcopy(model)
    layers = [(reference.fc1, "weight"), (reference.fc2, "weight"), (reference.out, "weight")]
    mask = Mask.ones(model)
    for _ in range(3):
        amount = math.floor(0.3 * mask.kept + 0.5)
        mask = prune.magnitude(model, mask, 0.3, scope="global")
        torch_prune.global_unstructured(layers, torch_prune.L1Unstructured, amount=amount)
    for module, _ in layers:
        name = next(n for n, m in reference.named_modules() if m is module) + ".weight"
        assert torch.equal(mask[name], module.weight_mask.bool())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**16),
    hidden=st.integers(1, 6),
    fractions=st.lists(st.floats(0, 1), min_size=1, max_size=3),
    scope=st.sampled_from(["layerwise", "global"]),
    out_rate=st.none() | st.floats(0, 1),
)
def test_magnitude_matches_the_naive_reference(device, seed, hidden, fractions, scope, out_rate):
    gen = torch.Generator().manual_seed(seed)
    # Weights on a coarse grid, so ties are frequent and tie-breaking is exercised.
    fc1 = (torch.randint(-3, 4, (hidden, 3), generator=gen) * 0.5).tolist()
    out = (torch.randint(-3, 4, (2, hidden), generator=gen) * 0.5).tolist()
    model = net(fc1, out, device=device)
    rates = None if out_rate is None else {"out.weight": out_rate}
    mask = Mask.ones(model)
    expected = flat_lists(mask)
    for fraction in fractions:
        mask = prune.magnitude(model, mask, fraction, scope=scope, layer_rates=rates)
        expected = naive_magnitude(model, expected, fraction, scope, rates)
        assert flat_lists(mask) == expected


def test_magnitude_leaves_its_inputs_alone_and_returns_fresh_tensors(device):
    model = net(device=device)
    mask = prune.magnitude(model, Mask.ones(model), 0.25)
    before = snapshot(model, mask)
    new = prune.magnitude(model, mask, 0.5, scope="global")
    assert_unchanged(model, mask, before)
    assert all(new[n].data_ptr() != mask[n].data_ptr() for n in mask)
    assert (new & mask) == new  # pruned weights never come back


def test_magnitude_rejects_bad_arguments():
    model = net()
    mask = Mask.ones(model)
    for fraction in (-0.1, 1.5, True, "0.2", float("nan")):
        with pytest.raises(ValueError, match="fraction must be a number in"):
            prune.magnitude(model, mask, fraction)
    with pytest.raises(ValueError, match=r"'fc9\.weight'.*valid names are \['fc1\.weight'"):
        prune.magnitude(model, mask, 0.2, layer_rates={"fc9.weight": 0.1})
    with pytest.raises(ValueError, match=r"layer_rates\['out\.weight'\]"):
        prune.magnitude(model, mask, 0.2, layer_rates={"out.weight": 2})
    with pytest.raises(ValueError, match="scope must be one of"):
        prune.magnitude(model, mask, 0.2, scope="global_")
    with pytest.raises(MaskError, match="shape"):
        prune.magnitude(net(fc1=[[1.0]]), mask, 0.2)


# -- random and shuffle ------------------------------------------------------------------------


def sparse_mask(device="cpu") -> Mask:
    """A (2, 5) layer keeping the first 3 entries of row 0, and a (3, 4) layer keeping 7."""
    a = torch.zeros(2, 5, dtype=torch.bool)
    a[0, :3] = True
    b = torch.arange(12).view(3, 4) % 2 == 0
    b[2, 3] = True
    return Mask({"a": a.to(device), "b": b.to(device)})


@pytest.mark.parametrize("draw", [prune.random, prune.shuffle], ids=["random", "shuffle"])
def test_random_masks_keep_each_layers_count_and_depend_only_on_the_seed(device, draw):
    mask = sparse_mask(device)
    before = {k: v.clone() for k, v in mask.items()}
    masks = [draw(mask, seed=s) for s in range(20)]
    assert all(kept_counts(m) == {"a": 3, "b": 7} for m in masks)
    assert all(m["a"].device == mask["a"].device for m in masks)
    assert draw(mask, seed=3) == masks[3]
    assert len({str(as_lists(m)) for m in masks}) > 10
    assert all(torch.equal(v, before[k]) for k, v in mask.items())


@pytest.mark.parametrize("draw", [prune.random, prune.shuffle], ids=["random", "shuffle"])
def test_random_positions_are_uniform_over_the_whole_layer(draw):
    # 400 draws of 3 kept among 10: each position is kept 120 times on average (sd ≈ 9).
    mask = sparse_mask()
    hits = sum(draw(mask, seed=s)["a"].long() for s in range(400))
    assert hits.sum() == 1200
    assert ((hits > 75) & (hits < 165)).all(), hits


def test_random_global_keeps_the_total_count():
    mask = sparse_mask()
    masks = [prune.random(mask, seed=s, scope="global") for s in range(30)]
    assert all(m.kept == 10 for m in masks)
    assert len({m.densities()["a"] for m in masks}) > 1  # layers trade weights


def test_random_with_a_fraction_removes_only_kept_weights(device):
    mask = sparse_mask(device)
    for seed in range(10):
        new = prune.random(mask, 0.5, seed=seed)
        assert (new & mask) == new
        # a: 3 → 3 - floor(1.5 + 0.5) = 1; b: 7 → 7 - floor(3.5 + 0.5) = 3
        assert kept_counts(new) == {"a": 1, "b": 3}
    assert prune.random(mask, 0.5, seed=1) != prune.random(mask, 0.5, seed=2)
    glob = prune.random(mask, 0.5, seed=0, scope="global")  # 10 → 5 over both layers
    assert glob.kept == 5 and (glob & mask) == glob
    assert prune.random(mask, 0.5, layer_rates={"a": 0})["a"].equal(mask["a"])


def test_random_rejects_layer_rates_without_a_fraction():
    with pytest.raises(ValueError, match="layer_rates needs a fraction"):
        prune.random(sparse_mask(), layer_rates={"a": 0.5})


# -- one_shot -----------------------------------------------------------------------------------


def top_by_magnitude(weights: list[float], n_keep: int) -> list[bool]:
    """Keep the n_keep largest |w|; among ties the later position survives."""
    order = sorted(range(len(weights)), key=lambda i: (abs(weights[i]), i))
    keep = [False] * len(weights)
    for i in order[len(weights) - n_keep :]:
        keep[i] = True
    return keep


def test_one_shot_layerwise_hits_the_target_density(device):
    model = mlp3(5, device)
    mask = prune.one_shot(model, 0.1)
    for name, keep in mask.items():
        weights = model.get_parameter(name).detach().flatten().tolist()
        expected = top_by_magnitude(weights, math.floor(0.1 * len(weights) + 0.5))
        assert keep.flatten().tolist() == expected
    assert mask.density == pytest.approx(0.1, abs=1e-5)


def test_one_shot_global_with_layer_rates(device):
    model = mlp3(6, device)
    mask = prune.one_shot(model, 0.05, scope="global", layer_rates={"out.weight": 0.1})
    # k = log 0.05 / log 0.8 = 13.4 rounds at 20 % leave the output layer 0.9^13.4 = 0.243 of its
    # 200 weights: floor(48.6 + 0.5) = 49.
    assert kept_counts(mask)["out.weight"] == 49
    hidden = ["fc1.weight", "fc2.weight"]
    weights = [w for n in hidden for w in model.get_parameter(n).detach().flatten().tolist()]
    expected = top_by_magnitude(weights, math.floor(0.05 * len(weights) + 0.5))
    assert [k for n in hidden for k in mask[n].flatten().tolist()] == expected


def test_one_shot_from_a_mask_never_revives_weights(device):
    model = net(device=device)
    start = Mask({"fc1.weight": torch.eye(4, 3, dtype=torch.bool), "out.weight": torch.ones(2, 4)})
    start = start.to(device)
    before = snapshot(model, start)
    mask = prune.one_shot(model, 0.5, mask=start)
    assert_unchanged(model, start, before)
    assert mask["fc1.weight"].equal(start["fc1.weight"])  # 3 kept < 6 = 50% of 12: left alone
    assert as_lists(mask)["out.weight"] == [[0, 0, 1, 1], [0, 0, 1, 1]]  # |w| 3, 4, 7, 8 stay


# -- units ---------------------------------------------------------------------------------------

# Unit scores ‖w_in[j]‖·|w_out[j]|: 5·0.1 = 0.5, 1·2 = 2, 1·3 = 3, 2·1 = 2 (a tie with unit 1).
UNIT_IN = [[3.0, 4.0], [1.0, 0.0], [0.6, 0.8], [2.0, 0.0]]
UNIT_OUT = [[0.1, 2.0, -3.0, 1.0]]


def unit_mask(model, units: list[int]) -> dict[str, list]:
    keep = [j in units for j in range(4)]
    return {"fc1.weight": [[k, k] for k in keep], "out.weight": [keep]}


def test_units_keeps_the_highest_scoring_hidden_units(device):
    model = net(UNIT_IN, UNIT_OUT, device=device)
    ones = Mask.ones(model)
    before = snapshot(model, ones)
    assert as_lists(prune.units(model, ones, 2)) == unit_mask(model, [2, 3])  # tie: 1 goes first
    assert as_lists(prune.units(model, ones, 1)) == unit_mask(model, [2])
    assert as_lists(prune.units(model, ones, 0)) == unit_mask(model, [])
    assert prune.units(model, ones, 4) == ones
    assert_unchanged(model, ones, before)


def test_units_counts_pruned_weights_as_zero_and_never_revives_dead_units(device):
    model = net(UNIT_IN, UNIT_OUT, device=device)
    mask = Mask.ones(model).float()
    mask["fc1.weight"][2, 1] = 0  # unit 2 now scores 0.6·3 = 1.8 < 2
    mask["out.weight"][0, 0] = 0  # unit 0 is dead: no outgoing weight
    mask = Mask(mask)
    assert prune.alive_units(mask).tolist() == [False, True, True, True]
    assert as_lists(prune.units(model, mask, 2)) == unit_mask(model, [1, 3])
    everything = prune.units(model, mask, 4)
    assert as_lists(everything)["out.weight"] == [[False, True, True, True]]
    assert as_lists(everything)["fc1.weight"] == [[0, 0], [1, 1], [1, 0], [1, 1]]


def test_alive_units_needs_both_an_incoming_and_an_outgoing_weight():
    mask = Mask(
        {
            "fc1.weight": torch.tensor([[1, 0], [0, 0], [1, 1], [0, 1]]),
            "out.weight": torch.tensor([[1, 1, 0, 1]]),
        }
    )
    assert prune.alive_units(mask).tolist() == [True, False, False, True]


def test_units_rejects_models_it_does_not_handle():
    with pytest.raises(ValueError, match="one-hidden-layer"):
        prune.units(lenet_300_100(), Mask.ones(lenet_300_100()), 2)
    model = xor_mlp(hidden=4)
    with pytest.raises(ValueError, match="n_keep"):
        prune.units(model, Mask.ones(model), -1)
    with pytest.raises(ValueError, match=r"no entry for \['out\.weight'\]"):
        prune.units(model, Mask.ones(model, names=["fc1.weight"]), 2)


# -- snip ---------------------------------------------------------------------------------------


def bn_net(device) -> nn.Sequential:
    layers = OrderedDict(
        fc1=nn.Linear(5, 8), bn=nn.BatchNorm1d(8), act=nn.ReLU(), out=nn.Linear(8, 3)
    )
    return init_(nn.Sequential(layers), seed=7).to(device)


def naive_snip(model, mask, X, y, density, loss) -> dict[str, list[bool]]:
    """|grad · w| of the masked weights by ordinary backprop on a copy, then a sorted list."""
    model = copy.deepcopy(model)
    mask.apply(model)
    loss(model(X), y).backward()
    scores, keep = [], []
    for name in mask:
        p = model.get_parameter(name)
        scores += (p.grad * p).abs().flatten().tolist()
        keep += mask[name].flatten().tolist()
    alive = sorted((i for i in range(len(keep)) if keep[i]), key=lambda i: (scores[i], i))
    n_keep = min(len(alive), math.floor(density * len(keep) + 0.5))
    for i in alive[: len(alive) - n_keep]:
        keep[i] = False
    out, start = {}, 0
    for name, m in mask.items():
        out[name], start = keep[start : start + m.numel()], start + m.numel()
    return out


@pytest.mark.parametrize(
    "loss",
    [None, lambda logits, y: (logits**2).mean()],
    ids=["default-loss", "custom-loss"],
)
def test_snip_matches_plain_autograd_and_leaves_the_model_untouched(device, loss):
    model = bn_net(device)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(16, 5, generator=gen).to(device)
    y = torch.randint(0, 3, (16,), generator=gen).to(device)
    start = prune.random(Mask.ones(model), 0.3, seed=1)
    before = snapshot(model, start)
    mask = prune.snip(model, start, X, y, 0.25, loss=loss)
    assert_unchanged(model, start, before)  # BatchNorm running statistics included
    reference_loss = loss if loss is not None else F.cross_entropy
    assert flat_lists(mask) == naive_snip(model, start, X, y, 0.25, reference_loss)
    assert mask.kept == math.floor(0.25 * start.total + 0.5)


# -- host-device synchronization -----------------------------------------------------------------

_HOST_READS = ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__")


@contextlib.contextmanager
def no_host_reads(monkeypatch):
    """Make every Python-level way of reading a tensor's value on the host raise."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host")

    with monkeypatch.context() as patch:
        for method in (*_HOST_READS, "__index__"):
            patch.setattr(torch.Tensor, method, forbidden)
        patch.setattr(torch, "nonzero", forbidden)
        yield


def every_pruning_call(model, X, y):
    mask = prune.magnitude(model, Mask.ones(model), 0.2, layer_rates={"out.weight": 0.1})
    mask = prune.magnitude(model, mask, 0.2, scope="global", layer_rates={"out.weight": 0.1})
    prune.random(mask, seed=0)
    prune.random(mask, 0.3, seed=0, scope="global")
    prune.shuffle(mask, seed=0)
    prune.one_shot(model, 0.1, scope="global", layer_rates={"out.weight": 0.5})
    prune.units(model, mask, 2)
    prune.snip(model, mask, X, y, 0.1)


def test_pruning_never_reads_tensor_values_on_the_host(monkeypatch):
    model = xor_mlp(hidden=8)
    data = xor(device="cpu").train
    every_pruning_call(model, data.X, data.y)  # warm-up outside the guard
    with no_host_reads(monkeypatch):
        every_pruning_call(model, data.X, data.y)
    with no_host_reads(monkeypatch), pytest.raises(AssertionError, match="on the host"):
        Mask.ones(model).kept  # noqa: B018 - the guard itself must be able to fail


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pruning_never_synchronizes_with_the_gpu():
    model = xor_mlp(hidden=8).cuda()
    data = xor(device="cuda").train
    every_pruning_call(model, data.X, data.y)  # warm-up: lazy CUDA initialization may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        every_pruning_call(model, data.X, data.y)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# -- masks hold during training -----------------------------------------------------------------

OPTIMIZERS = {
    "adam": {"optimizer": "adam"},
    "adam+wd": {"optimizer": "adam", "weight_decay": 0.1},
    "sgd+momentum": {"optimizer": "sgd", "momentum": 0.9},
    "sgd+momentum+wd": {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.1},
}


def tiny_data(device) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(32, 2, generator=gen)
    split = Split(X.to(device), (X[:, 0] * X[:, 1] < 0).long().to(device))
    return Dataset("tiny", split, split, split, 2)


def pruned_weights_are_zero(weights: Mapping[str, torch.Tensor], mask: Mask) -> bool:
    """``weights``: a ``state_dict`` or ``dict(model.named_parameters())``."""
    return all((weights[name].detach()[~keep] == 0).all() for name, keep in mask.items())


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**16),
    optimizer=st.sampled_from(sorted(OPTIMIZERS)),
    steps=st.integers(1, 6),
    density=st.floats(0.1, 0.9),
)
def test_pruned_weights_stay_exactly_zero_during_training(device, seed, optimizer, steps, density):
    # tanh, so every unit with a path from input to output gets a gradient on every batch
    model = xor_mlp(hidden=6, activation="tanh", seed=seed).to(device)
    mask = prune.random(Mask.ones(model), 1 - density, seed=seed)
    assume(prune.alive_units(mask).any())
    start = {name: model.get_parameter(name).detach().clone() for name in mask}
    result = train(
        model, tiny_data(device), mask=mask, lr=0.05, steps=steps, batch_size=8, eval_every=steps,
        checkpoint_steps=range(steps + 1), progress=False, **OPTIMIZERS[optimizer],
    )  # fmt: skip
    assert sorted(result.checkpoints) == list(range(steps + 1))
    for state in [*result.checkpoints.values(), model.state_dict()]:  # before every step, and after
        assert pruned_weights_are_zero(state, mask)
    moved = [(model.get_parameter(n).detach() != start[n])[k].any() for n, k in mask.items()]
    assert all(moved), "the kept weights did not train"


@pytest.mark.parametrize("optimizer", ["adam", "sgd+momentum"])
def test_masking_only_the_gradient_would_fail_that_check(optimizer):
    """Why train() starts a fresh optimizer for every run, and how the test above would see it.

    An optimizer that took steps before the pruning remembers them: SGD's momentum buffer and
    Adam's moments keep moving a weight whose gradient is now masked to zero. A fresh optimizer
    has zero state for a weight that is zero and has a masked gradient, so masking the gradient is
    all train() needs. (Weight decay cannot revive such a weight either: it adds λ·0.)
    """
    model = xor_mlp(hidden=6, seed=0)
    X, y = tiny_data("cpu").train
    opt = (
        torch.optim.Adam(model.parameters(), lr=0.05)
        if optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    )

    def step(mask: Mask | None) -> None:
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(X).squeeze(1), y.float()).backward()
        for name, keep in (mask or {}).items():
            model.get_parameter(name).grad.mul_(keep)
        opt.step()

    for _ in range(3):
        step(None)
    mask = prune.magnitude(model, Mask.ones(model), 0.5)
    mask.apply(model)
    assert pruned_weights_are_zero(model.state_dict(), mask)
    for _ in range(3):
        step(mask)
    assert not pruned_weights_are_zero(model.state_dict(), mask)
