"""ticketlab.cache: atomic writes, and no entry that cannot be trusted is ever served."""

from __future__ import annotations

import hashlib
import json
import re
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
    import ticketlab.atomic as atomic_module

    store = ResultCache(tmp_path, RECIPE, CODE)

    def killed(fd):  # the payload's bytes are in the temporary file; the move never happens
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic_module.os, "fsync", killed)
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
    written = cache_module.FORMAT_VERSION
    monkeypatch.setattr(cache_module, "FORMAT_VERSION", written + 1)
    expect_unusable(store, tmp_path, rf"format {written}, expected {written + 1}")


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


# -- layout damage: unusable and recomputed, never a crash -------------------------------------


def test_a_folder_in_an_entrys_place_is_unusable_and_removed(tmp_path):
    store = ResultCache(tmp_path, RECIPE, CODE)
    (tmp_path / "cell.pt").mkdir()
    (tmp_path / "cell.pt" / "inside").write_text("x")
    with pytest.warns(CacheWarning, match="a folder stands where"):
        assert store.load("cell", coordinates=AT) is None
    assert not (tmp_path / "cell.pt").exists()
    store.save("cell", payload(), AT)  # the place is usable again
    assert_same(store.load("cell", coordinates=AT), payload())


def test_a_folder_in_a_manifests_place_is_replaced_on_save(tmp_path):
    store = ResultCache(tmp_path, RECIPE, CODE)
    (tmp_path / "cell.json").mkdir()
    with pytest.warns(CacheWarning, match="is a folder in a cache entry's place"):
        store.save("cell", payload(), AT)
    assert_same(store.load("cell", coordinates=AT), payload())


def test_a_file_where_a_folder_should_be_is_replaced_on_save(tmp_path):
    store = ResultCache(tmp_path, RECIPE, CODE)
    (tmp_path / "seed1").write_text("not a folder")
    assert store.load("seed1/cell", coordinates=AT) is None  # absent, not a crash
    with pytest.warns(CacheWarning, match="seed1 is a file where the cache needs a folder"):
        store.save("seed1/cell", payload(), AT)
    assert_same(store.load("seed1/cell", coordinates=AT), payload())


def test_a_payload_that_is_not_a_dict_is_not_served(tmp_path):
    store = ResultCache(tmp_path, RECIPE, CODE)
    store.save("cell", payload(), AT)
    data = tmp_path / "cell.pt"
    torch.save([1, 2, 3], data)  # checksum made to match: only the structure is wrong
    manifest = json.loads((tmp_path / "cell.json").read_text())
    manifest["sha256"] = hashlib.sha256(data.read_bytes()).hexdigest()
    (tmp_path / "cell.json").write_text(json.dumps(manifest))
    expect_unusable(store, tmp_path, "the payload is a list, not a dict")


def test_a_payload_the_callers_check_rejects_is_not_served(tmp_path):
    store = saved(tmp_path)
    with pytest.warns(CacheWarning, match="unusable: its mask has the wrong shape"):
        assert (
            store.load("cell", coordinates=AT, check=lambda p: "its mask has the wrong shape")
            is None
        )
    assert files(tmp_path) == []
    store = saved(tmp_path)
    assert store.load("cell", coordinates=AT, check=lambda p: None) is not None


def test_locking_removes_orphaned_temporary_files_of_its_entries_only(tmp_path):
    store = saved(tmp_path)
    orphans = [tmp_path / ".cell.pt.abc123.tmp", tmp_path / ".cell.json.def456.tmp"]
    other = tmp_path / ".other.pt.xyz789.tmp"
    for path in [*orphans, other]:
        path.write_bytes(b"left by a killed run")
    with store.lock(["cell"]):
        assert not any(p.exists() for p in orphans)
    assert other.exists()  # another entry's write may still be in progress
    assert store.load("cell", coordinates=AT) is not None


def test_a_lock_is_exclusive_across_processes(tmp_path):
    import subprocess
    import sys

    store = ResultCache(tmp_path, RECIPE, CODE)
    probe = (
        "import sys; from filelock import FileLock, Timeout\n"
        "try:\n    FileLock(sys.argv[1]).acquire(timeout=0.2); print('acquired')\n"
        "except Timeout:\n    print('held elsewhere')\n"
    )
    lock_file = str(tmp_path / "seed0" / "cell.lock")

    def other_process() -> str:
        out = subprocess.run([sys.executable, "-c", probe, lock_file], capture_output=True)
        return out.stdout.decode().strip()

    with store.lock(["seed0/cell"]):
        assert other_process() == "held elsewhere"
    assert other_process() == "acquired"


# -- failing early and clearly -----------------------------------------------------------------


def test_prepare_names_a_file_standing_where_the_cache_folder_should_be(tmp_path):
    (tmp_path / "cache").write_text("I am a file")
    store = ResultCache(tmp_path / "cache" / "imp" / "x", RECIPE, CODE)
    with pytest.raises(cache_module.CacheError, match=r"cache is a file, not a folder.*TICKETLAB"):
        store.prepare(1000)


def test_prepare_refuses_a_disk_without_room_for_a_round(tmp_path):
    store = ResultCache(tmp_path, RECIPE, CODE)
    store.prepare(1000)  # plenty of room here
    with pytest.raises(cache_module.CacheError, match=r"free, but one round .* needs about"):
        store.prepare(10**18)
    assert files(tmp_path) == []  # the write check leaves nothing behind


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 kB file system (tmpfs; needs root, as on the project's machines)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_names_the_folder_the_space_and_the_fix_and_loses_one_entry(small_disk):
    store = ResultCache(small_disk / "cache", RECIPE, CODE)
    store.save("kept", payload(), AT)
    big = {"w": torch.zeros(100_000)}  # 400 kB: more than the disk holds
    with pytest.raises(cache_module.CacheError) as raised:
        store.save("big", big, AT)
    message = str(raised.value)
    assert str(small_disk / "cache") in message
    assert re.search(r"\(40\d\.\d kB needed", message)  # 100,000 float32s and torch.save's framing
    assert "TICKETLAB_CACHE" in message and "rerun to resume" in message
    assert files(small_disk / "cache") == ["kept.json", "kept.pt"]  # no partial file, no temp
    assert_same(store.load("kept", coordinates=AT), payload())


def test_prepare_reports_a_read_only_cache(small_disk):
    import subprocess

    (small_disk / "cache").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.raises(cache_module.CacheError, match=r"is not writable .*TICKETLAB_CACHE"):
            ResultCache(small_disk / "cache", RECIPE, CODE).prepare(1000)
        with pytest.raises(cache_module.CacheError, match="cannot create the result cache"):
            ResultCache(small_disk / "new", RECIPE, CODE).prepare(1000)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
