"""Tests for ticketlab.masks.Mask: construction, checks, counts, apply, files, display."""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab.masks import Mask, MaskError
from ticketlab.models import init_


def mlp(device="cpu") -> nn.Sequential:
    """fc1 (3 → 4), out (4 → 2): 12 + 8 prunable weights."""
    layers = OrderedDict(fc1=nn.Linear(3, 4), act=nn.ReLU(), out=nn.Linear(4, 2))
    return init_(nn.Sequential(layers), seed=0).to(device)


def hand_mask(device="cpu") -> Mask:
    """fc1 keeps 3 of 12 (25%), out keeps 6 of 8 (75%): 9 of 20 overall (45%)."""
    fc1 = torch.zeros(4, 3, dtype=torch.bool)
    fc1[0, 0] = fc1[1, 2] = fc1[3, 1] = True
    out = torch.ones(2, 4, dtype=torch.bool)
    out[0, 1] = out[1, 3] = False
    return Mask({"fc1.weight": fc1.to(device), "out.weight": out.to(device)})


# -- construction ------------------------------------------------------------------------------


def test_construction_copies_so_later_edits_of_the_source_do_not_leak_in(device):
    source = torch.ones(2, 3, dtype=torch.bool, device=device)
    mask = Mask({"w": source})
    source[0, 0] = False
    assert mask["w"].all()
    assert mask["w"].device == source.device


def test_zero_one_tensors_of_any_dtype_become_bool(device):
    mask = Mask({"w": torch.tensor([[0.0, 1.0], [1.0, 0.0]], device=device)})
    assert mask["w"].dtype == torch.bool
    assert mask["w"].tolist() == [[False, True], [True, False]]


def test_bad_construction_is_a_clear_error():
    with pytest.raises(MaskError, match=r"'w'.*other than 0 and 1"):
        Mask({"w": torch.tensor([0.0, 0.5])})
    with pytest.raises(TypeError, match="str"):
        Mask({0: torch.ones(2, dtype=torch.bool)})
    with pytest.raises(TypeError, match=r"'w' must be a torch\.Tensor"):
        Mask({"w": [True, False]})
    with pytest.raises(TypeError, match="mapping"):
        Mask([("w", torch.ones(2))])
    with pytest.raises(MaskError, match="at least one"):
        Mask({})
    with pytest.raises(MaskError, match="'w' is empty"):
        Mask({"w": torch.ones(0, 3, dtype=torch.bool)})


def test_ones_covers_the_prunable_weights_in_parameter_order(device):
    model = mlp(device)
    mask = Mask.ones(model)
    assert list(mask) == ["fc1.weight", "out.weight"]
    for name, keep in mask.items():
        param = model.get_parameter(name)
        assert keep.dtype == torch.bool and keep.shape == param.shape
        assert keep.device == param.device and keep.all()
    assert list(Mask.ones(model, names=["out.weight", "fc1.bias"])) == ["out.weight", "fc1.bias"]
    with pytest.raises(MaskError, match=r"fc9\.weight.*valid names"):
        Mask.ones(model, names=["fc9.weight"])


def test_mapping_protocol():
    mask = hand_mask()
    assert len(mask) == 2 and "fc1.weight" in mask and "fc2.weight" not in mask
    assert list(mask.keys()) == ["fc1.weight", "out.weight"]
    assert dict(mask)["out.weight"] is mask["out.weight"]


# -- validate and apply -----------------------------------------------------------------------


def test_validate_names_the_offending_parameter():
    model = mlp()
    Mask.ones(model).validate(model)  # fits: no error
    extra = Mask({"fc9.weight": torch.ones(4, 3, dtype=torch.bool)})
    with pytest.raises(MaskError, match=r"'fc9\.weight'.*no such parameter.*fc1\.weight"):
        extra.validate(model)
    shape = Mask({"out.weight": torch.ones(4, 2, dtype=torch.bool)})
    with pytest.raises(MaskError, match=r"'out\.weight' has shape \(4, 2\).*\(2, 4\)"):
        shape.validate(model)
    elsewhere = Mask({"fc1.weight": torch.ones(4, 3, dtype=torch.bool, device="meta")})
    with pytest.raises(MaskError, match=r"'fc1\.weight' is on meta.*mask\.to\('cpu'\)"):
        elsewhere.validate(model)
    model.register_parameter("steps", nn.Parameter(torch.zeros(3, dtype=torch.long), False))
    integer = Mask({"steps": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(MaskError, match=r"'steps' has dtype torch\.int64"):
        integer.validate(model)


def test_apply_zeroes_exactly_the_pruned_weights_in_place(device):
    model = mlp(device)
    with torch.no_grad():
        model.fc1.weight[0, 1] = float("nan")  # pruned below: must become 0, not NaN · 0
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mask = hand_mask(device)
    assert mask.apply(model) is model
    for name, value in model.state_dict().items():
        if name in mask:
            keep = mask[name]
            assert torch.equal(value[keep], before[name][keep])
            assert (value[~keep] == 0).all()
        else:
            assert torch.equal(value, before[name])
    assert all(p.grad is None for p in model.parameters())


def test_apply_refuses_a_mask_for_another_model():
    with pytest.raises(MaskError, match=r"fc9\.weight"):
        Mask({"fc9.weight": torch.ones(1, dtype=torch.bool)}).apply(mlp())


# -- counting ----------------------------------------------------------------------------------


def test_counts_match_the_hand_count(device):
    mask = hand_mask(device)
    assert (mask.total, mask.kept, mask.density) == (20, 9, 0.45)
    assert mask.densities() == {"fc1.weight": 0.25, "out.weight": 0.75}
    counts = mask.kept_per_layer()
    assert {name: (c.device, c.dtype, c.dim(), int(c)) for name, c in counts.items()} == {
        "fc1.weight": (mask["fc1.weight"].device, torch.int64, 0, 3),
        "out.weight": (mask["out.weight"].device, torch.int64, 0, 6),
    }


def test_report_is_one_tidy_row_per_layer():
    report = hand_mask().report()
    assert list(report.columns) == ["layer", "total", "kept", "density"]
    assert report.to_dict("records") == [
        {"layer": "fc1.weight", "total": 12, "kept": 3, "density": 0.25},
        {"layer": "out.weight", "total": 8, "kept": 6, "density": 0.75},
    ]


# -- conversions and set algebra ----------------------------------------------------------------


def test_float_gives_zero_one_float32_tensors(device):
    mask = hand_mask(device)
    floats = mask.float()
    assert list(floats) == list(mask)
    for name, value in floats.items():
        assert value.dtype == torch.float32 and value.device == mask[name].device
        assert torch.equal(value, torch.where(mask[name], 1.0, 0.0))


def test_to_moves_every_tensor(device):
    moved = hand_mask().to(device)
    assert all(keep.device.type == device.type for keep in moved.values())
    assert moved == hand_mask()


def test_and_or_invert_follow_elementwise_logic():
    a, b = hand_mask(), Mask.ones(mlp())
    b = Mask({**b, "fc1.weight": torch.eye(4, 3, dtype=torch.bool)})
    both, either, pruned = a & b, a | b, ~a
    for name in a:
        x, y = a[name].tolist(), b[name].tolist()
        rows = range(len(x))
        cols = range(len(x[0]))
        assert both[name].tolist() == [[x[i][j] and y[i][j] for j in cols] for i in rows]
        assert either[name].tolist() == [[x[i][j] or y[i][j] for j in cols] for i in rows]
        assert pruned[name].tolist() == [[not x[i][j] for j in cols] for i in rows]
    assert (both.kept, either.kept, pruned.kept) == (7, 13, 11)
    with pytest.raises(MaskError, match="different layers"):
        _ = a & Mask({"fc1.weight": a["fc1.weight"]})


# -- equality and display ----------------------------------------------------------------------


def test_equality_compares_names_and_values_not_order():
    a = hand_mask()
    assert a == hand_mask()
    assert a == Mask({"out.weight": a["out.weight"], "fc1.weight": a["fc1.weight"]})
    assert a != ~a
    assert a != Mask({"fc1.weight": a["fc1.weight"]})
    assert a != Mask({"fc1.weight": a["fc1.weight"], "out.weight": a["out.weight"].flatten()})
    assert a != dict(a)
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_equality_across_devices():
    assert hand_mask("cuda") == hand_mask("cpu")


def test_repr_shows_overall_and_per_layer_density():
    assert repr(hand_mask()) == "Mask(density=45.0%, fc1.weight 25.0%, out.weight 75.0%)"
    sparse = Mask({"w": torch.arange(1000) < 3})  # 0.3%: below 1% a second decimal appears
    assert repr(sparse) == "Mask(density=0.30%, w 0.30%)"


def test_html_repr_is_a_table_with_the_counts():
    page = hand_mask()._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>")
    for text in ("fc1.weight", "out.weight", "(4, 3)", "9 of 20", "45.0%", "25.0%", "75.0%"):
        assert text in page


# -- files -------------------------------------------------------------------------------------


def odd_mask(device="cpu") -> Mask:
    """Sizes that are not multiples of 8, to exercise the padding of the last byte."""
    gen = torch.Generator().manual_seed(1)
    return Mask(
        {
            "a": (torch.rand(7, 3, generator=gen) < 0.5).to(device),
            "b": (torch.rand(1, generator=gen) < 2).to(device),
            "c": (torch.rand(5, 2, 3, generator=gen) < 0.3).to(device),
        }
    )


def test_save_load_round_trip(device, tmp_path):
    mask = odd_mask(device)
    path = mask.save(tmp_path / "m.pt")
    assert path == tmp_path / "m.pt"
    assert os.listdir(tmp_path) == ["m.pt"]  # no temporary file left behind
    loaded = Mask.load(path, device=device)
    assert loaded == mask and list(loaded) == list(mask)
    assert all(keep.device.type == device.type for keep in loaded.values())
    assert all(keep.device.type == "cpu" for keep in Mask.load(path).values())


def test_file_stores_one_bit_per_weight_most_significant_first(tmp_path):
    mask = odd_mask()
    payload = torch.load(mask.save(tmp_path / "m.pt"), weights_only=True)
    for bits, keep in zip(payload["bits"], mask.values(), strict=True):
        assert bits.tolist() == np.packbits(keep.flatten().numpy()).tolist()


def test_file_is_compact(tmp_path):
    big = Mask({"w": torch.rand(1000, 1000, generator=torch.Generator().manual_seed(0)) < 0.5})
    size = os.path.getsize(big.save(tmp_path / "packed.pt"))
    torch.save(dict(big), tmp_path / "plain.pt")
    assert size < 1.2 * 1000 * 1000 / 8  # an eighth of a byte per weight, plus a little
    assert size < os.path.getsize(tmp_path / "plain.pt") / 7


def test_a_failed_save_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    path = hand_mask().save(tmp_path / "m.pt")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        (~hand_mask()).save(path)
    assert os.listdir(tmp_path) == ["m.pt"]
    assert Mask.load(path) == hand_mask()


def test_save_into_a_missing_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hand_mask().save(tmp_path / "nowhere" / "m.pt")


def test_load_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no mask file"):
        Mask.load(tmp_path / "missing.pt")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(MaskError, match="not a readable mask file"):
        Mask.load(garbage)

    good = odd_mask().save(tmp_path / "good.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(MaskError, match="truncated or corrupted"):
        Mask.load(truncated)

    foreign = tmp_path / "state.pt"
    torch.save(mlp().state_dict(), foreign)
    with pytest.raises(MaskError, match="no ticketlab mask"):
        Mask.load(foreign)

    payload = torch.load(tmp_path / "good.pt", weights_only=True)
    payload["bits"][0][0] ^= 1  # one flipped bit
    flipped = tmp_path / "flipped.pt"
    torch.save(payload, flipped)
    with pytest.raises(MaskError, match="integrity"):
        Mask.load(flipped)

    payload = torch.load(tmp_path / "good.pt", weights_only=True)
    payload["version"] = 99
    future = tmp_path / "future.pt"
    torch.save(payload, future)
    with pytest.raises(MaskError, match="version 99"):
        Mask.load(future)


def test_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ticketlab.Mask", "payload": os.system}, path)
    with pytest.raises(MaskError, match="not a readable mask file"):
        Mask.load(path)
