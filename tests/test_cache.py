"""ticketlab.cache: atomic writes, and no entry that cannot be trusted is ever served."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch

from ticketlab import cache as cache_module
from ticketlab.cache import CacheWarning, ResultCache

RECIPE = "model.name='xor_mlp';train.steps=10"
CODE = "0123456789abcdef"  # a results version (ticketlab.versions)
AT = {"seed": 0, "round": 1, "kind": "ticket"}  # an entry's coordinates


def payload(device="cpu") -> dict:
    gen = torch.Generator().manual_seed(0)
    return {
        "row": {"test_acc": 0.75, "early_stop_step": 30, "diverged": False, "kind": "ticket"},
        "history": {"step": torch.arange(4), "val_loss": torch.rand(4, generator=gen)},
        "weights": {"fc1.weight": torch.randn(3, 2, generator=gen).to(device)},
        "mask": {"fc1.weight": (torch.rand(3, 2, generator=gen) < 0.5).to(device)},
        "checkpoints": {10: {"w": torch.ones(2, device=device)}},
        "steps": [0, 10, 20],
    }


def assert_same(a, b) -> None:
    """Deep equality oracle for nested dicts/lists of tensors and plain values."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_round_trip(tmp_path, device):
    store = ResultCache(tmp_path / "run", RECIPE, CODE)
    original = payload(device)
    store.save("seed0/round01_ticket", original, AT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good entry loads without any warning
        loaded = store.load("seed0/round01_ticket", coordinates=AT)
    assert_same(loaded, original)
    assert loaded["weights"]["fc1.weight"].device.type == "cpu"
    on_device = store.load("seed0/round01_ticket", device=device, coordinates=AT)
    assert on_device["weights"]["fc1.weight"].device.type == device.type
    assert original["weights"]["fc1.weight"].device.type == device.type  # input untouched


def test_layout_and_manifest(tmp_path):
    store = ResultCache(tmp_path, RECIPE, CODE)
    store.save("a/b", payload(), AT)
    assert files(tmp_path) == ["b.json", "b.pt"]
    manifest = json.loads((tmp_path / "a" / "b.json").read_text())
    sha = hashlib.sha256((tmp_path / "a" / "b.pt").read_bytes()).hexdigest()
    assert manifest == {
        "format": cache_module.FORMAT_VERSION,
        "sha256": sha,
        "recipe": RECIPE,
        "code": CODE,
        "coordinates": AT,
        "versions": {"ticketlab": "0.1.0", "torch": torch.__version__},
    }
    assert repr(store) == f"ResultCache({str(tmp_path)!r})"


def test_absent_entry_is_none_without_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ResultCache(tmp_path / "nothing", RECIPE, CODE).load("x", coordinates=AT) is None


def test_save_overwrites_and_leaves_no_temporary_files(tmp_path):
    store = ResultCache(tmp_path, RECIPE, CODE)
    store.save("x", {"v": torch.zeros(3)}, AT)
    store.save("x", {"v": torch.ones(3)}, AT)
    assert files(tmp_path) == ["x.json", "x.pt"]
    assert torch.equal(store.load("x", coordinates=AT)["v"], torch.ones(3))


def test_interrupted_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    store = ResultCache(tmp_path, RECIPE, CODE)

    def explode(obj, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        store.save("x", payload(), AT)
    assert files(tmp_path) == []  # neither the temp file nor a partial payload remain
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.load("x", coordinates=AT) is None


def saved(tmp_path) -> ResultCache:
    store = ResultCache(tmp_path, RECIPE, CODE)
    store.save("cell", payload(), AT)
    return store


def expect_unusable(store: ResultCache, tmp_path, match: str) -> None:
    with pytest.warns(CacheWarning, match=match):
        assert store.load("cell", coordinates=AT) is None
    assert files(tmp_path) == []  # both files deleted, so the next run recomputes


def test_flipped_byte_is_detected(tmp_path):
    store = saved(tmp_path)
    path = tmp_path / "cell.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    expect_unusable(store, tmp_path, "checksum does not match")


def test_truncated_payload_is_detected(tmp_path):
    store = saved(tmp_path)
    path = tmp_path / "cell.pt"
    path.write_bytes(path.read_bytes()[:100])
    expect_unusable(store, tmp_path, "checksum does not match")


def test_missing_manifest_is_an_interrupted_write(tmp_path):
    store = saved(tmp_path)
    (tmp_path / "cell.json").unlink()  # the manifest is written last
    expect_unusable(store, tmp_path, "incomplete")


def test_missing_payload_is_detected(tmp_path):
    store = saved(tmp_path)
    (tmp_path / "cell.pt").unlink()
    expect_unusable(store, tmp_path, "incomplete")


def test_unreadable_manifest_is_detected(tmp_path):
    store = saved(tmp_path)
    (tmp_path / "cell.json").write_text('{"format": 1, "sha2')
    expect_unusable(store, tmp_path, "cannot be read")


def test_other_recipe_is_not_served(tmp_path):
    saved(tmp_path)
    other = ResultCache(tmp_path, RECIPE + ";train.lr=0.1", CODE)
    expect_unusable(other, tmp_path, "different recipe")


def test_results_of_other_code_are_not_served(tmp_path):
    saved(tmp_path)
    other = ResultCache(tmp_path, RECIPE, "fedcba9876543210")
    expect_unusable(other, tmp_path, "computed by other code .* changed or upgraded")


def test_an_entry_copied_to_another_cells_place_is_not_served(tmp_path):
    store = saved(tmp_path)
    with pytest.warns(CacheWarning, match=r"holds the entry .*'seed': 0.*not .*'seed': 1"):
        assert store.load("cell", coordinates={**AT, "seed": 1}) is None
    assert files(tmp_path) == []


def test_a_payload_without_the_needed_keys_is_not_served(tmp_path):
    store = saved(tmp_path)
    with pytest.warns(CacheWarning, match=r"payload lacks \['rewind_point'\]"):
        assert store.load("cell", coordinates=AT, required=["mask", "rewind_point"]) is None


def test_other_format_version_is_not_served(tmp_path, monkeypatch):
    store = saved(tmp_path)
    monkeypatch.setattr(cache_module, "FORMAT_VERSION", cache_module.FORMAT_VERSION + 1)
    expect_unusable(store, tmp_path, r"format 2, expected 3")


class Exploit:
    """Unpickling this creates the file ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_objects_are_refused_not_executed(tmp_path, tmp_path_factory):
    store = ResultCache(tmp_path, RECIPE, CODE)
    marker = tmp_path_factory.mktemp("elsewhere") / "pwned"
    path = tmp_path / "cell.pt"
    torch.save({"row": Exploit(marker)}, path)
    # A manifest that vouches for the file: only safe loading stands between it and execution.
    manifest = {
        "format": cache_module.FORMAT_VERSION,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "recipe": RECIPE,
        "code": CODE,
        "coordinates": AT,
    }
    (tmp_path / "cell.json").write_text(json.dumps(manifest))
    expect_unusable(store, tmp_path, "cannot be read")
    assert not marker.exists()


def test_the_exploit_would_run_under_an_unrestricted_load(tmp_path):
    # The oracle for the test above: the crafted file really does execute when fully unpickled.
    marker = tmp_path / "pwned"
    torch.save({"row": Exploit(marker)}, tmp_path / "cell.pt")
    torch.load(tmp_path / "cell.pt", weights_only=False)
    assert marker.exists()
