"""Tests for ticketlab.sparsity and the hardware experiment (``inference_benchmark``,
``sparsity_speed``): correctness of every storage format against references computed here, and
memory and FLOP accounting by hand. Timings of real kernels are never asserted; the timing logic
is tested on a fake clock in test_timing.py."""

from __future__ import annotations

import copy
import warnings

import matplotlib
import pandas as pd
import pytest
import torch

from ticketlab import models, prune, sparsity
from ticketlab.experiments import hardware
from ticketlab.masks import Mask

matplotlib.use("Agg")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")


def _layer(device, out_features=5, in_features=8, density=0.4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=gen)
    mask = torch.rand(out_features, in_features, generator=gen) < density
    bias = torch.randn(out_features, generator=gen)
    return weight.to(device), mask.to(device), bias.to(device)


# -- correctness -----------------------------------------------------------------------------------


def test_layer_variants_match_references_computed_here(device):
    weight, mask, bias = _layer(device)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1)).to(device)
    pruned = torch.where(mask, weight, torch.zeros_like(weight))
    expected_pruned = x @ pruned.T + bias
    expected_dense = x @ weight.T + bias

    variants = sparsity.sparse_linear_variants(weight, mask, bias)

    assert {"dense", "masked-dense", "csr", "coo"} <= set(variants)
    for name, call in variants.items():
        expected = expected_dense if name in sparsity.UNPRUNED else expected_pruned
        got = call(x)
        assert got.shape == (3, 5), name
        assert torch.allclose(got.float(), expected, rtol=1e-4, atol=1e-5), name


def test_layer_variants_without_bias(device):
    weight, mask, _ = _layer(device, seed=3)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(2)).to(device)
    expected = x @ (weight * mask).T
    for name in ("csr", "coo", "masked-dense"):
        got = sparsity.sparse_linear_variants(weight, mask)[name](x)
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), name


def test_network_variants_match_the_pruned_module(device):
    model = models.mlp((12, 8, 4), seed=2).to(device)
    mask = prune.one_shot(model, 0.3)
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(0)).to(device)
    pruned_model = mask.apply(copy.deepcopy(model))
    with torch.no_grad():
        expected_pruned, expected_dense = pruned_model(x), model(x)

    variants = sparsity.network_variants(model, mask)

    assert list(variants)[:4] == ["dense", "masked-dense", "csr", "coo"]
    for name, call in variants.items():
        expected = expected_dense if name in sparsity.UNPRUNED else expected_pruned
        assert torch.allclose(call(x).float(), expected, rtol=1e-4, atol=1e-5), name
    sparsity.check_equal(variants, x)  # agrees with the references above


def test_network_variants_flatten_images_like_lenet():
    model = models.lenet_300_100(seed=1)
    mask = prune.one_shot(model, 0.05)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    expected = mask.apply(copy.deepcopy(model))(x)
    got = sparsity.network_variants(model, mask)["csr"](x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_check_equal_names_a_wrong_variant():
    weight, mask, bias = _layer("cpu")
    variants = sparsity.sparse_linear_variants(weight, mask, bias)
    variants["csr"] = lambda x: variants["dense"](x)  # computes the unpruned layer: wrong
    with pytest.raises(AssertionError, match="'csr'"):
        sparsity.check_equal(variants, torch.randn(3, 8))


def test_network_variants_reject_other_layers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    with pytest.raises(TypeError, match="Tanh"):
        sparsity.network_variants(model, Mask.ones(model))


def test_mask_of_wrong_shape_is_refused():
    weight, _, _ = _layer("cpu")
    with pytest.raises(ValueError, match="shape"):
        sparsity.sparse_linear_variants(weight, torch.ones(2, 2, dtype=torch.bool))


# -- memory ----------------------------------------------------------------------------------------


def test_storage_bytes_by_hand():
    dense = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])  # float32, 3 nonzeros
    assert sparsity.storage_bytes(dense) == 6 * 4
    # CSR: 3 row pointers (rows + 1) and 3 column indices, int64; 3 float32 values.
    assert sparsity.storage_bytes(dense.to_sparse_csr()) == 3 * 8 + 3 * 8 + 3 * 4
    # COO: a (2, 3) int64 index tensor and 3 float32 values.
    assert sparsity.storage_bytes(dense.to_sparse()) == 2 * 3 * 8 + 3 * 4
    small = torch.sparse_csr_tensor(
        torch.tensor([0, 2, 3], dtype=torch.int32),
        torch.tensor([0, 2, 2], dtype=torch.int32),
        torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
        size=(2, 3),
        check_invariants=True,
    )
    assert sparsity.storage_bytes(small) == 3 * 4 + 3 * 4 + 3 * 8


def test_layer_costs_by_hand():
    weight = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])  # float32, 6 weights
    mask = torch.tensor([[True, False, False], [True, False, True]])  # 3 kept
    costs = sparsity.layer_costs(
        weight, mask, ["dense", "masked-dense", "dense-fp16", "csr", "coo"]
    )
    assert costs["dense"] == costs["masked-dense"] == (6 * 4, 2 * 6)  # zeros stored, multiplied
    assert costs["dense-fp16"] == (6 * 2, 2 * 6)
    # CSR: 3 int64 row pointers, 3 int64 column indices, 3 float32 values; COO: (2, 3) indices.
    assert costs["csr"] == (3 * 8 + 3 * 8 + 3 * 4, 2 * 3)
    assert costs["coo"] == (2 * 3 * 8 + 3 * 4, 2 * 3)
    with pytest.raises(ValueError, match="unknown variant"):
        sparsity.layer_costs(weight, mask, ["ideal"])


# -- the benchmark table ---------------------------------------------------------------------------


def test_inference_benchmark_schema_and_accounting():
    widths = (8, 6, 4)
    table = hardware.inference_benchmark(
        densities=(1.0, 0.25), batch_sizes=(1, 3), device="cpu", repeats=2, rounds=2,
        widths=widths, min_time=1e-4, semi_structured=False,
    )  # fmt: skip
    assert list(table.columns) == [
        "device", "threads", "widths", "structure", "batch", "density", "variant", "seed",
        "seconds_median", "seconds_iqr", "speedup_vs_dense", "memory_bytes", "flops", "repeats",
    ]  # fmt: skip
    # 2 rounds × 2 densities × 2 batch sizes × (4 formats + the ideal row)
    assert len(table) == 2 * 2 * 2 * 5
    assert set(table["variant"]) == {"dense", "masked-dense", "csr", "coo", "ideal"}
    assert set(table["seed"]) == {0, 1} and set(table["threads"]) == {1}
    assert table["widths"].iloc[0] == "8-6-4" and set(table["structure"]) == {"unstructured"}
    assert "2:4" in table.attrs["notes"]
    assert (table.loc[table["variant"] == "dense", "speedup_vs_dense"] == 1.0).all()

    def row(variant, density, batch=3):
        hit = table[(table["variant"] == variant) & (table["density"] == density)
                    & (table["batch"] == batch) & (table["seed"] == 0)]  # fmt: skip
        assert len(hit) == 1
        return hit.iloc[0]

    weights = 8 * 6 + 6 * 4  # 72 float32 weights in the two layers
    assert row("dense", 0.25)["memory_bytes"] == weights * 4
    assert row("masked-dense", 0.25)["memory_bytes"] == weights * 4  # zeros are still stored
    assert row("dense", 0.25)["flops"] == 2 * 3 * weights
    # CSR at density 1: per layer (rows + 1) int64 pointers, and int64 index + float32 value per
    # weight. Layer 1: 7·8 + 48·12 = 632 bytes; layer 2: 5·8 + 24·12 = 328 bytes.
    assert row("csr", 1.0)["memory_bytes"] == 632 + 328
    # one_shot keeps floor(0.25 · n + 0.5) per layer: 12 of 48 and 6 of 24.
    kept = 12 + 6
    assert row("ideal", 0.25)["memory_bytes"] == kept * 4
    assert row("ideal", 0.25)["flops"] == 2 * 3 * kept
    assert row("ideal", 0.25)["speedup_vs_dense"] == pytest.approx(weights / kept)
    assert row("coo", 0.25)["memory_bytes"] == kept * (2 * 8 + 4)


def test_inference_benchmark_restores_threads():
    before = torch.get_num_threads()
    hardware.inference_benchmark(
        densities=(0.5,), batch_sizes=(1,), device="cpu", repeats=2, rounds=1, widths=(4, 4),
        min_time=1e-4, threads=1,
    )  # fmt: skip
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [{"densities": (0.0,)}, {"densities": (1.5,)},
                                 {"batch_sizes": (0,)}, {"repeats": 1},
                                 {"widths": (784,)}, {"widths": (784, 0, 10)}])  # fmt: skip
def test_inference_benchmark_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        hardware.inference_benchmark(**{"densities": (0.5,), "device": "cpu", **bad})


# -- 2:4 semi-structured sparsity ------------------------------------------------------------------


def test_semi_structured_mask_by_hand():
    weight = torch.tensor([[1.0, -5.0, 3.0, 0.5, 2.0, 2.5, -3.0, 1.0]])
    keep = sparsity.semi_structured_mask(weight)
    assert keep.tolist() == [[False, True, True, False, False, True, True, False]]
    assert sparsity.is_semi_structured(keep)
    assert not sparsity.is_semi_structured(torch.tensor([[True, True, True, False]]))
    with pytest.raises(ValueError, match="multiple of 4"):
        sparsity.semi_structured_mask(torch.ones(2, 6))


def test_semi_structured_padding_with_a_stand_in_kernel():
    """The 2:4 wrapper pads to kernel-friendly widths and slices back; a dense stand-in for the
    compressed weight lets this run on any machine."""
    weight, _, bias = _layer("cpu", out_features=5, in_features=12, seed=5)
    weight = weight * sparsity.semi_structured_mask(weight)
    layer = sparsity._SemiStructuredLinear(weight, bias, convert=lambda t: t)
    assert tuple(layer.weight.shape) == (64, 64) and layer.weight.dtype == torch.float16
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(0))
    got = layer(x)
    assert got.shape == (3, 5)
    assert torch.allclose(got.float(), x @ weight.T + bias, rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_semi_structured_is_skipped_with_a_note_without_cuda():
    assert "compute capability" in sparsity.semi_structured_support("cpu")
    weight, _, bias = _layer("cpu", out_features=4, in_features=8)
    mask = sparsity.semi_structured_mask(weight)
    assert "2:4" not in sparsity.sparse_linear_variants(weight, mask, bias)
    notes: dict[str, str] = {}
    forced = sparsity.sparse_linear_variants(weight, mask, bias, semi_structured=True, notes=notes)
    assert "2:4" not in forced and "dense-fp16" in forced
    assert "Ampere" in notes["2:4"]


def _has_2_4() -> bool:
    return torch.cuda.is_available() and sparsity.semi_structured_support("cuda") is None


@pytest.mark.skipif(not _has_2_4(), reason="needs a CUDA GPU with compute capability >= 8.0")
def test_semi_structured_variant_on_gpu():
    model = models.lenet_300_100(seed=0).to("cuda")
    mask = Mask({f"{n}.weight": sparsity.semi_structured_mask(m.weight)
                 for n, m in model.named_children() if isinstance(m, torch.nn.Linear)})  # fmt: skip
    variants = sparsity.network_variants(model, mask, semi_structured=True)
    assert "2:4" in variants and "dense-fp16" in variants
    sparsity.check_equal(variants, torch.randn(8, 784, device="cuda"))


# -- the experiment's claims and figure ------------------------------------------------------------


def _fake_results(speedups: dict[tuple[str, float], list[float]]) -> pd.DataFrame:
    rows = []
    for (variant, density), values in speedups.items():
        for seed, value in enumerate(values):
            rows.append({"structure": "unstructured", "variant": variant, "density": density,
                         "batch": 1, "seed": seed, "speedup_vs_dense": value})  # fmt: skip
    return pd.DataFrame(rows)


_AGREES = {  # speedups (over 4 rounds) that agree with every claim
    ("masked-dense", 0.5): [0.98, 1.01, 1.0, 0.99],
    ("masked-dense", 0.1): [1.02, 0.97, 1.0, 1.01],
    ("csr", 0.5): [0.3, 0.31, 0.29, 0.3],
    ("csr", 0.1): [1.2, 1.1, 1.25, 1.15],
    ("csr", 0.01): [2.5, 2.4, 2.6, 2.55],
}
_DISAGREES = {  # ... and speedups that contradict every claim
    ("masked-dense", 0.5): [1.6, 1.7, 1.65, 1.62],
    ("masked-dense", 0.1): [1.5, 1.55, 1.6, 1.5],
    ("csr", 0.5): [1.3, 1.4, 1.35, 1.3],
    ("csr", 0.1): [12.0, 13.0, 12.5, 12.2],
    ("csr", 0.01): [0.5, 0.6, 0.55, 0.5],
}


@pytest.mark.parametrize(("speedups", "outcome"), [(_AGREES, "supported"),
                                                   (_DISAGREES, "refuted")])  # fmt: skip
def test_claims_can_come_out_either_way(speedups, outcome):
    """Every claim reads the benchmark's columns, and made-up speedups decide it either way."""
    table = _fake_results(speedups)
    for claim in hardware.CLAIMS:
        assert claim.evaluate(table).outcome == outcome, claim.name


def test_sparsity_speed_end_to_end_small():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = hardware.sparsity_speed(
            densities=(0.5, 0.1, 0.01), batch_sizes=(1,), device="cpu", repeats=2, rounds=3,
            progress=False,
        )  # fmt: skip
    assert [v.claim.name for v in result.verdicts] == [c.name for c in hardware.CLAIMS]
    assert all(v.n == 3 for v in result.verdicts)
    assert "2:4" in result.extras["notes"]
    table = hardware.speedup_table(result.table, 0.1)
    assert list(table.columns) == ["batch 1"]
    assert list(table.index) == ["dense", "masked-dense", "csr", "coo", "ideal"]
    assert table.loc["ideal", "batch 1"] == pytest.approx(10.0, rel=0.01)
    memory = hardware.memory_table(result.table)
    assert list(memory.index) == [0.5, 0.1, 0.01]
    assert memory.loc[0.5, "dense"] == pytest.approx(266_200 * 4 / 1024)
    fig = result.plot()
    (ax,) = fig.axes
    assert ax.get_title() == "batch 1"
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    left, right = ax.get_xlim()
    assert left > right  # densest on the left
    with pytest.raises(ValueError, match="densities measured"):
        hardware.speedup_table(result.table, 0.2)
