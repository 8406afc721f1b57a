"""Training on tensors that live on the device: no DataLoader, no host round-trips per step.

One call, ``train(model, data, ...)``, trains a model in place and returns a ``TrainResult``.
What makes it suitable for lottery-ticket science:

* **Data order is its own seed.** Each epoch is a fresh permutation of the training set given by
  ``epoch_permutations([data_seed], e)`` (a counter-based hash, identical on every device); the
  last partial batch of an epoch is dropped. Changing ``data_seed`` changes the "SGD noise"
  while the initialization stays fixed.
* **Masks are enforced exactly.** With ``mask`` (a ``ticketlab.Mask`` or any mapping name → bool
  tensor) pruned weights are zeroed before training and their gradients are masked. Every run
  starts a fresh optimizer, so a pruned weight has zero gradient, zero momentum and zero Adam
  moments from its first step on: no update (L2 weight decay included, which adds λ·0) can move
  it off exactly zero, and no re-zeroing pass is needed after the step.
* **Frozen entries stay bit-identical.** ``grad_mask`` marks, per element, which entries of a
  parameter may train; with a zero gradient the others cannot move either, except under weight
  decay, which pulls every non-zero weight, so then they are restored to their starting values
  after each step (used by the BatchNorm-only control, which trains a random subset of weights).
* **Resuming from step k** (``start_step``) replays the learning-rate schedule and data order from
  step k. The optimizer starts fresh (zero Adam moments / momentum), as in open_lth's rewinding.
* **Early stopping is measured after the fact**: ``early_stop_step`` is the evaluation step with the
  minimum validation loss (Frankle & Carbin 2019), training always runs to ``steps``.

Evaluation every ``eval_every`` steps is the only point where the host waits for the device
(one small transfer, which also detects divergence).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # pandas loads when the first history is built, not with the package
    import pandas as pd

from .masks import as_mask
from .mlp_step import MLPGrad
from .optim import make_optimizer

__all__ = [
    "MaskRules",
    "Recorder",
    "TrainConfig",
    "TrainResult",
    "TrainStep",
    "batch_indices",
    "epoch_permutations",
    "evaluate",
    "loss_and_correct",
    "mean_loss",
    "train",
]


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, schedule, length, evaluation cadence.

    ``steps`` is the absolute step training ends at (so resuming from ``start_step=k`` trains
    ``steps - k`` more). ``lr`` is the peak learning rate; at step t the rate is
    ``lr × min(1, (t + 1) / warmup_steps) × gamma ** (number of milestones ≤ t)``.
    ``weight_decay`` is L2 added to the gradient (classic Adam/SGD, not AdamW).
    """

    steps: int = 1000
    batch_size: int = 60
    optimizer: str = "adam"
    lr: float = 1.2e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    eval_every: int = 100

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("steps", "batch_size", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.momentum < 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError("momentum, weight_decay and warmup_steps must be >= 0")
        if self.momentum and self.optimizer == "adam":
            raise ValueError("momentum applies to SGD only; Adam has its own betas")
        object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in self.milestones)))

    def lr_at(self, step: int) -> float:
        """Learning rate used for the update at ``step`` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        decays = sum(1 for m in self.milestones if m <= step)
        return self.lr * warm * self.gamma**decays

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes``; unknown names raise a clear error."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            valid = [f.name for f in fields(self)]
            raise TypeError(f"unknown training setting(s) {sorted(unknown)}; valid: {valid}")
        return replace(self, **changes)


class TrainResult:
    """What one training run produced.

    ``history`` has one row per evaluation: step, train_loss (mean over the steps since the previous
    evaluation; NaN at the starting step), val_loss, val_acc, test_acc (accuracies in [0, 1]).
    ``checkpoints`` maps a step to a cloned ``state_dict`` taken *before* that step's update.

    ``train`` hands over the history as arrays (``steps`` (evals,) and ``values`` (evals, 4) in the
    column order above); the ``DataFrame`` is built on first use of ``history`` or ``final``, so
    a script that reads only the metrics (``test_acc``, ``summary()``, the repr) never loads
    pandas (about 0.3 s of a fresh process's start; benchmarks/startup.py). Give either
    ``history`` or ``steps`` and ``values``. Once the DataFrame exists it is what the metrics
    read, edits included.
    """

    def __init__(
        self,
        history: pd.DataFrame | None = None,
        config: TrainConfig | None = None,
        checkpoints: dict[int, dict[str, torch.Tensor]] | None = None,
        diverged: bool = False,
        message: str = "",
        wall_time: float = 0.0,
        model: nn.Module | None = None,
        *,
        steps: Sequence[int] | None = None,
        values: np.ndarray | None = None,
    ) -> None:
        arrays = (steps is not None, values is not None)
        if (history is None and not all(arrays)) or (history is not None and any(arrays)):
            raise TypeError("give TrainResult either history (a DataFrame) or steps and values")
        if history is None:
            steps = np.array(steps, dtype=np.int64)
            values = np.array(values, dtype=np.float64).reshape(len(steps), len(_METRICS))
        self._history, self._steps, self._values = history, steps, values
        self.config = config
        self.checkpoints = {} if checkpoints is None else checkpoints
        self.diverged, self.message = diverged, message
        self.wall_time, self.model = wall_time, model

    @property
    def history(self) -> pd.DataFrame:
        if self._history is None:
            import pandas as pd

            columns = {c: self._values[:, j] for j, c in enumerate(_METRICS)}
            self._history = pd.DataFrame({"step": self._steps, **columns})
        return self._history

    def _column(self, name: str) -> np.ndarray:
        """One history column as an array: from the DataFrame once there is one (it may have
        been edited), else from the arrays ``train`` handed over."""
        if self._history is not None:
            return self._history[name].to_numpy()
        return self._steps if name == "step" else self._values[:, _METRICS.index(name)]

    @property
    def final(self) -> pd.Series:
        return self.history.iloc[-1]

    @property
    def test_acc(self) -> float:
        return float(self._column("test_acc")[-1])

    @property
    def val_acc(self) -> float:
        return float(self._column("val_acc")[-1])

    @property
    def train_loss(self) -> float:
        return float(self._column("train_loss")[-1])

    def _at_early_stop(self, name: str) -> np.ndarray:
        return self._column(name)[_early_stop_row(self._column("val_loss"))]

    @property
    def early_stop_step(self) -> int:
        return int(self._at_early_stop("step"))

    @property
    def early_stop_test_acc(self) -> float:
        return float(self._at_early_stop("test_acc"))

    def summary(self) -> dict:
        """Final metrics as a flat dict (one row of an experiment table)."""
        return {
            "test_acc": self.test_acc,
            "val_acc": self.val_acc,
            "train_loss": self.train_loss,
            "early_stop_step": self.early_stop_step,
            "early_stop_test_acc": self.early_stop_test_acc,
            "diverged": self.diverged,
        }

    def __repr__(self) -> str:
        status = f"DIVERGED: {self.message}" if self.diverged else "ok"
        return (
            f"TrainResult(steps={int(self._column('step')[-1])}, test_acc={self.test_acc:.2%}, "
            f"val_acc={self.val_acc:.2%}, early_stop_step={self.early_stop_step}, "
            f"early_stop_test_acc={self.early_stop_test_acc:.2%}, wall_time={self.wall_time:.1f}s, "
            f"{status})"
        )


_METRICS = ("train_loss", "val_loss", "val_acc", "test_acc")


def _early_stop_row(val_loss: np.ndarray) -> int:
    """Index of the minimum validation loss (earliest on ties; NaN never wins; 0 if all NaN)."""
    val_loss = np.asarray(val_loss, dtype=np.float64)
    finite = ~np.isnan(val_loss)
    if not finite.any():
        return 0
    return int(np.flatnonzero(finite)[np.argmin(val_loss[finite])])


def early_stop_step(history: pd.DataFrame) -> int:
    """The evaluation step with minimum validation loss (earliest on ties; NaN losses never win)."""
    return int(history["step"].iloc[_early_stop_row(history["val_loss"].to_numpy())])


def mean_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean training loss over the batch (last) dimension: shape ``logits.shape[:-2]``.

    The loss of ``loss_and_correct`` without the accuracy bookkeeping a training step does not
    need: cross-entropy for logits (..., N, C), binary cross-entropy with logits for (..., N, 1).
    """
    if logits.shape[-1] == 1:
        z = logits.squeeze(-1)
        target = y.to(z.dtype).expand_as(z)
        if z.dim() == 1:
            return F.binary_cross_entropy_with_logits(z, target)
        return F.binary_cross_entropy_with_logits(z, target, reduction="none").mean(-1)
    if logits.dim() == 2:
        return F.cross_entropy(logits, y)
    flat = logits.reshape(-1, logits.shape[-1])
    target = y.expand(logits.shape[:-1]).reshape(-1)
    return F.cross_entropy(flat, target, reduction="none").view(logits.shape[:-1]).mean(-1)


def loss_and_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss and correctness for logits (..., N, C) or single-logit (..., N, 1).

    Multi-class: cross-entropy, correct = argmax == y. One logit: binary cross-entropy with
    logits, correct = (logit > 0) == y. Both returned with shape (..., N), on the logits' device.
    A prediction from NaN logits is never correct (argmax would pick the NaN, so a diverged
    network would otherwise score as if it always answered class 0).
    """
    valid = ~logits.isnan().any(-1)
    if logits.shape[-1] == 1:
        z = logits.squeeze(-1)
        target = y.to(z.dtype).expand_as(z)
        loss = F.binary_cross_entropy_with_logits(z, target, reduction="none")
        return loss, ((z > 0) == target.bool()) & valid
    flat = logits.reshape(-1, logits.shape[-1])
    target = y.expand(logits.shape[:-1]).reshape(-1)
    loss = F.cross_entropy(flat, target, reduction="none").view(logits.shape[:-1])
    return loss, (logits.argmax(-1) == y) & valid


@torch.no_grad()
def _eval_sums(model: nn.Module, X: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """(loss sum, correct count) over a split, on device, in eval mode."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, device=X.device)
    for i in range(0, len(y), chunk):
        loss, correct = loss_and_correct(model(X[i : i + chunk]), y[i : i + chunk])
        total += torch.stack([loss.sum(), correct.sum().to(loss.dtype)])
    model.train(was_training)
    return total


def evaluate(model: nn.Module, split, chunk: int = 2000) -> tuple[float, float]:
    """Mean loss and accuracy (in [0, 1]) of ``model`` on ``split`` (an ``(X, y)`` pair)."""
    X, y = split
    loss_sum, correct = _eval_sums(model, X, y, chunk).tolist()
    return loss_sum / len(y), correct / len(y)


_MASK32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer mixer (int64 tensors holding values < 2**32).

    Multipliers stay below 2**31 so no product overflows int64, which keeps the result identical on
    every device.
    """
    for _ in range(2):
        x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def epoch_permutations(
    seeds: Sequence[int], epoch: int, n: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Permutations of ``range(n)`` for ``epoch``, one row per data seed: shape (len(seeds), n).

    Row i sorts the keys ``hash(seed_i, epoch, j)``, j = 0…n−1. The hash is a bijection, so keys
    never tie, and it is computed with integer tensor ops, so the order is the same on every device
    and many seeds are shuffled in one call (which population training relies on).
    """
    return _permutations(seeds, epoch, epoch + 1, n, device)[0]


def _permutations(seeds, first: int, end: int, n: int, device) -> torch.Tensor:
    """``epoch_permutations`` for epochs ``first`` … ``end - 1`` in one call: (epochs, seeds, n).

    Integer ops and a sort of keys that never tie: each epoch's rows are exactly the ones a call
    for that epoch alone gives.
    """
    base = _hash32(torch.tensor([s & _MASK32 for s in seeds], dtype=torch.int64, device=device))
    epochs = torch.arange(first, end, dtype=torch.int64, device=device) & _MASK32
    base = _hash32(base.unsqueeze(0) ^ epochs.unsqueeze(1))
    keys = _hash32(base.unsqueeze(-1) ^ torch.arange(n, device=device))
    return torch.argsort(keys, dim=-1)


# How many keys ``batch_indices`` sorts at once: epochs of a small dataset (XOR's four examples
# make an epoch of one step) are shuffled in blocks instead of a dozen small tensor ops a step.
_KEYS_PER_BLOCK = 2**16


def batch_indices(
    n: int,
    batch_size: int,
    seeds: int | Sequence[int],
    start_step: int,
    end_step: int,
    device: torch.device | str | None = None,
) -> Iterator[torch.Tensor]:
    """Indices of the training batches for steps ``start_step`` … ``end_step - 1``.

    Epoch e is ``epoch_permutations(seeds, e, n)``; each epoch yields ``n // batch_size`` batches
    (the remainder is dropped and reshuffled into the next epoch). Step s therefore always sees the
    same batch, whether training started at 0 or resumed at s. An int ``seeds`` yields index
    tensors of shape (batch_size,); a sequence yields (len(seeds), batch_size), one row per seed.
    """
    if batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {n} training examples; use batch_size <= {n}"
        )
    single = isinstance(seeds, int)
    seed_list = [seeds] if single else list(seeds)
    per_epoch = n // batch_size
    end_epoch = (end_step - 1) // per_epoch + 1
    per_block = max(1, _KEYS_PER_BLOCK // (len(seed_list) * n))
    first, block = None, None
    for step in range(start_step, end_step):
        epoch = step // per_epoch
        if block is None or epoch - first == len(block):  # epochs only count up
            first = epoch
            block = _permutations(seed_list, first, min(first + per_block, end_epoch), n, device)
            if single:
                block = block[:, 0]
        # narrow, not perms[..., a:b]: the same view without Python indexing's few microseconds
        yield block[epoch - first].narrow(-1, (step % per_epoch) * batch_size, batch_size)


def check_steps(cfg: TrainConfig, start_step: int, checkpoint_steps: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``start_step`` and every checkpoint step lie in the run."""
    if not 0 <= start_step <= cfg.steps:
        raise ValueError(f"start_step={start_step} must lie in [0, steps={cfg.steps}]")
    bad = [s for s in set(checkpoint_steps) if not start_step <= s <= cfg.steps]
    if bad:
        raise ValueError(f"checkpoint_steps {sorted(bad)} lie outside [start_step, steps]")


def _as_config(config: TrainConfig | None, overrides: dict) -> TrainConfig:
    if config is None:
        return TrainConfig().replace(**overrides)
    if not isinstance(config, TrainConfig):
        # A full recipe carries its training settings in ``.train``.
        config = getattr(config, "train", None)
        if not isinstance(config, TrainConfig):
            raise TypeError("config must be a TrainConfig or a ticketlab.recipes.Recipe")
    return config.replace(**overrides)


def _masked_params(
    model: nn.Module, mask: Mapping[str, torch.Tensor] | None, what: str
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Parameters named by ``mask`` and float 0/1 copies of the mask on their device.

    ``mask`` is coerced to a ``Mask`` and checked against ``model`` once, here (``as_mask``).
    """
    if mask is None:
        return [], []
    mask = as_mask(mask, model, what)
    params = dict(model.named_parameters())
    out_p = [params[name] for name in mask]
    return out_p, [m.to(p.dtype) for p, m in zip(out_p, mask.values(), strict=True)]


class MaskRules:
    """``train``'s mask rules on parameter tensors: a model's own, or a population's stacked ones.

    ``pruned`` and ``frozen`` pair each parameter with a float 0/1 tensor of its shape and device:
    pruning masks (weights held at exactly zero) and trainability masks (``grad_mask``; entries
    at 0 are held at their starting values). Construction zeroes the pruned weights;
    ``mask_grads`` runs between backward and the optimizer step, ``restore`` after the step. The
    module docstring says why a fresh optimizer and masked gradients keep pruned weights at zero
    without a re-zeroing pass.
    """

    def __init__(self, pruned, frozen, weight_decay: float) -> None:
        with torch.no_grad():
            if pruned:
                torch._foreach_mul_([p for p, _ in pruned], [m for _, m in pruned])
        # Only weight decay can move a frozen entry; then p ← p·m + p₀·(1 − m) after each step
        # restores it exactly.
        self.frozen = list(frozen) if frozen and weight_decay > 0 else []
        self.frozen_base = [p.detach() * (1 - m) for p, m in self.frozen]
        self.grad_masks = [(p, m) for p, m in [*pruned, *frozen] if p.requires_grad]

    def mask_grads(self) -> None:
        # A parameter the loss does not reach gets no gradient; the rest in one fused call.
        live = [(p.grad, m) for p, m in self.grad_masks if p.grad is not None]
        if live:
            torch._foreach_mul_([g for g, _ in live], [m for _, m in live])

    def restore(self) -> None:
        if self.frozen:
            torch._foreach_mul_([p for p, _ in self.frozen], [m for _, m in self.frozen])
            torch._foreach_add_([p for p, _ in self.frozen], self.frozen_base)


class TrainStep:
    """One optimizer step with ``train``'s mask rules, callable as ``step(X, y, lr) -> loss``.

    Pruned weights (``mask``) are zeroed at construction and their gradients are masked; the
    optimizer is created here, so its state for them starts and stays at zero and they never move
    (see the module docstring). Entries frozen by ``grad_mask`` get masked gradients too, and are
    restored to their values at construction after each step when weight decay could move them.
    A call never waits for the device (no ``.item()``), so steps queue up on a GPU.
    Returns the batch's mean loss as a detached 0-d tensor.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, mask=None, grad_mask=None) -> None:
        self.model = model
        pruned = zip(*_masked_params(model, mask, "mask"), strict=True)
        frozen = zip(*_masked_params(model, grad_mask, "grad_mask"), strict=True)
        self.rules = MaskRules(list(pruned), list(frozen), config.weight_decay)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
        self.optimizer = make_optimizer(trainable, config)
        # A plain MLP's gradients by hand, bit for bit autograd's without its graph (mlp_step).
        self.by_hand = MLPGrad.of(model)

    def __call__(self, X: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        if self.by_hand is not None:
            # One no_grad region for the whole step: a context manager costs microseconds, and a
            # LeNet step at one CPU thread is about 1.3 ms.
            with torch.no_grad():
                loss = self.by_hand.grads(X, y)  # replaces every .grad, or writes nothing
                if loss is not None:
                    self._update(lr)
                    return loss
        self.optimizer.zero_grad()  # None grads let backward write them without an extra pass
        loss = mean_loss(self.model(X), y)
        loss.backward()
        with torch.no_grad():
            self._update(lr)
        return loss.detach()

    def _update(self, lr: float) -> None:
        """Masked gradients → optimizer step → frozen entries restored (in no_grad)."""
        self.rules.mask_grads()
        self.optimizer.step(lr)
        self.rules.restore()


class Recorder:
    """What both trainers do around their steps: evaluation → history → divergence → checkpoints.

    For N members trained together (N = 1 for ``train``). The trainer supplies ``evaluate()``, a
    (3, N) tensor of val_loss, val_acc, test_acc on the device, and ``snapshot()``, one cloned
    ``state_dict`` per member. After each step it calls ``step_done(step + 1, losses)`` with the
    (N,) batch losses; that returns whether any member is still training. The contract:

    * a history row at ``start_step``, every ``eval_every`` steps and at ``steps``; train_loss is
      the mean batch loss since the previous row (NaN in the first row);
    * a NaN or infinite loss *before* training is a ``ValueError`` (nothing to train);
    * a member whose val or train loss becomes non-finite has diverged: its history ends at that
      row, its weights are kept as they were there (``frozen``), and it gets a warning and message;
    * ``checkpoint_steps`` are cloned before that step's update (``start_step`` and ``steps``
      allowed); training stops early once every member has diverged.
    """

    def __init__(self, n, cfg, start_step, checkpoint_steps, evaluate, snapshot, device, bar):
        self.cfg, self.n, self.evaluate, self.snapshot, self.bar = cfg, n, evaluate, snapshot, bar
        self.wanted = set(checkpoint_steps)
        self.device = device
        self.checkpoints: list[dict[int, dict[str, torch.Tensor]]] = [{} for _ in range(n)]
        self.records: list[tuple[int, torch.Tensor]] = []
        self.running = torch.zeros(n, device=device)
        self.since_eval = 0
        self.diverged_at: list[int | None] = [None] * n
        self.frozen: dict[int, dict[str, torch.Tensor]] = {}
        self.started = time.perf_counter()
        self.start_step = start_step
        self._checkpoint(start_step)
        row = self._record(start_step)
        bad_members = (~torch.isfinite(row[1])).nonzero().flatten().tolist()
        if bad_members:
            who = "the model's" if n == 1 else f"member(s) {bad_members}'s"
            raise ValueError(
                f"{who} loss is NaN or infinite before training; check the data and weights"
            )
        self.alive = torch.ones(n, dtype=torch.bool, device=device)

    def _checkpoint(self, step: int) -> None:
        if step in self.wanted:
            for i, state in enumerate(self.snapshot()):
                self.checkpoints[i][step] = state

    def _record(self, step: int) -> torch.Tensor:
        """Evaluate and append the row (train_loss, val_loss, val_acc, test_acc): shape (4, N)."""
        if self.since_eval:
            train_loss = self.running / self.since_eval
        else:
            train_loss = torch.full((self.n,), math.nan, device=self.device)
        self.records.append((step, torch.cat([train_loss.unsqueeze(0), self.evaluate()])))
        self.running, self.since_eval = torch.zeros(self.n, device=self.device), 0
        return self.records[-1][1]

    def step_done(self, done: int, losses: torch.Tensor) -> bool:
        """Account for the step that brought training to ``done``; False once all diverged."""
        self.running += losses
        self.since_eval += 1
        self._checkpoint(done)
        if done % self.cfg.eval_every and done != self.cfg.steps:
            return True
        self.bar.update(done - self.start_step - self.bar.n)
        row = self._record(done)
        finite = torch.isfinite(row[:2]).all(0)
        # The evaluation's one transfer: who diverged just now, and the mean accuracy to show.
        *newly, val_acc = torch.cat([self.alive & ~finite, row[2].mean().unsqueeze(0)]).tolist()
        if any(newly):
            states = self.snapshot()
            for i, is_new in enumerate(newly):
                if is_new:
                    self.diverged_at[i], self.frozen[i] = done, states[i]
        self.alive &= finite
        self.bar.set_postfix(val_acc=f"{val_acc:.2%}", refresh=False)
        return bool(self.alive.any())

    def results(self, models: Sequence[nn.Module]) -> list[TrainResult]:
        """One ``TrainResult`` per member; a diverged member's model gets its frozen weights."""
        wall = time.perf_counter() - self.started
        steps = np.array([s for s, _ in self.records], dtype=np.int64)
        # (evals, 4, N): one transfer at the end; float64, like a history of Python floats.
        table = torch.stack([r for _, r in self.records]).cpu().double().numpy()
        results = []
        for i, model in enumerate(models):
            if i in self.frozen:
                model.load_state_dict(self.frozen[i])
            keep = len(steps)
            message = ""
            if self.diverged_at[i] is not None:
                who = "training" if self.n == 1 else f"member {i}"
                message = (
                    f"{who} diverged by step {self.diverged_at[i]}: the loss became NaN or "
                    f"infinite. Lower the learning rate (lr={self.cfg.lr:g}) or check the data "
                    "for NaNs."
                )
                keep = int((steps <= self.diverged_at[i]).sum())
                warnings.warn(message, RuntimeWarning, stacklevel=3)
            results.append(
                TrainResult(
                    steps=steps[:keep],
                    values=table[:keep, :, i],
                    config=self.cfg,
                    checkpoints=self.checkpoints[i],
                    diverged=self.diverged_at[i] is not None,
                    message=message,
                    wall_time=wall,
                    model=model,
                )
            )
        return results


def train(
    model: nn.Module,
    data,
    config: TrainConfig | None = None,
    *,
    mask: Mapping[str, torch.Tensor] | None = None,
    grad_mask: Mapping[str, torch.Tensor] | None = None,
    data_seed: int = 0,
    start_step: int = 0,
    checkpoint_steps: Sequence[int] = (),
    progress: bool = True,
    **overrides,
) -> TrainResult:
    """Train ``model`` in place on ``data`` and return a ``TrainResult``.

    Args:
        model: any ``nn.Module`` classifier (logits (N, C), or one logit (N, 1) for binary tasks).
            It is moved to the device of ``data``.
        data: a ``ticketlab.data.Dataset`` (``.train``, ``.val``, ``.test`` splits of (X, y)).
        config: a ``TrainConfig`` (or a recipe with ``.train``); keyword ``overrides`` such as
            ``steps=500, lr=1e-3`` replace its fields.
        mask: pruning mask (name → bool tensor); pruned weights are held at exactly zero.
        grad_mask: per-element trainability (name → bool tensor); False entries are held at their
            starting values. Parameters with ``requires_grad=False`` are never trained.
        data_seed: seed of the data order (the "SGD noise").
        start_step: resume the schedule and data order from this step (see module docstring).
        checkpoint_steps: steps at which to keep a cloned ``state_dict`` (before that step's update;
            ``start_step`` and ``steps`` are allowed).
        progress: show a ``tqdm`` progress bar.
    """
    from tqdm.auto import tqdm

    cfg = _as_config(config, overrides)
    check_steps(cfg, start_step, checkpoint_steps)
    X, y = data.train
    dev = X.device
    model.to(dev)
    chunk = max(cfg.batch_size, 1000)
    step_once = TrainStep(model, cfg, mask=mask, grad_mask=grad_mask)
    n_val, n_test = len(data.val.y), len(data.test.y)

    def evaluate_now() -> torch.Tensor:
        val = _eval_sums(model, *data.val, chunk)
        test = _eval_sums(model, *data.test, chunk)
        return torch.stack([val[0] / n_val, val[1] / n_val, test[1] / n_test]).unsqueeze(1)

    def snapshot() -> list[dict[str, torch.Tensor]]:
        return [{k: v.detach().clone() for k, v in model.state_dict().items()}]

    bar = tqdm(total=cfg.steps - start_step, disable=not progress, desc="train", leave=False)
    model.train()
    recorder = Recorder(1, cfg, start_step, checkpoint_steps, evaluate_now, snapshot, dev, bar)
    batches = batch_indices(len(y), cfg.batch_size, data_seed, start_step, cfg.steps, dev)
    for step, idx in enumerate(batches, start=start_step):
        loss = step_once(X.index_select(0, idx), y.index_select(0, idx), cfg.lr_at(step))
        if not recorder.step_done(step + 1, loss.unsqueeze(0)):
            break
    bar.close()
    return recorder.results([model])[0]
