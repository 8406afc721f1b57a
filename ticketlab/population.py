"""Population training: many independent MLPs trained as one batched computation.

Lottery-ticket science needs many runs of the same small network: hundreds of XOR seeds, IMP over
several seeds and controls. Trained one after another, a tiny network spends its time in Python
and kernel-launch overhead. Here N networks of the same architecture are stacked, layer by layer,
into tensors with a leading member dimension (weights (N, out, in)), and each step runs one batched
matmul (``torch.baddbmm``) per layer for all members at once.

Every member stays independent: it has its own initialization, mask, data order (its own
``data_seed``) and optimizer state. The loss is the sum of the members' mean losses, so each
member's gradient is exactly its own; Adam and SGD act element-wise, so one optimizer over the
stacked tensors equals N optimizers. Results match ``train`` run on each member separately up to
floating-point summation order (tested).

Supported architectures: ``nn.Sequential`` of ``Flatten``, ``Linear``, ``ReLU`` and ``Tanh``
(``xor_mlp``, ``lenet_300_100``); ``supports(model)`` tells. Other models train with ``train``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .optim import make_optimizer
from .train import (
    TrainConfig,
    TrainResult,
    _as_config,
    batch_indices,
    loss_and_correct,
    mean_loss,
)

__all__ = ["supports", "train_population"]

_ACTIVATIONS = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh}


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model.named_children())
    ok = all(isinstance(m, (nn.Flatten, nn.Linear, *_ACTIVATIONS)) for _, m in children)
    return children if ok else None


def supports(model: nn.Module) -> bool:
    """True if ``model`` can be trained in a population (a Sequential MLP, see module docstring)."""
    return _layers(model) is not None


def _signature(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


class _StackedMLP:
    """The members' parameters stacked along dim 0, with a batched forward pass.

    Linear weights are stored transposed, (N, in, out), so that both the batched matmul and its
    weight gradient are contiguous (a transposed view would make every backward pass write the
    gradient through strided memory). ``member(i)`` gives member i's tensors in module layout.
    """

    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        self.layers = _layers(models[0])
        if self.layers is None:
            raise TypeError(
                "population training supports nn.Sequential MLPs (Flatten/Linear/ReLU/Tanh); "
                f"got {type(models[0]).__name__}. Train such models one by one with "
                "ticketlab.train."
            )
        sig = _signature(models[0])
        for i, m in enumerate(models[1:], start=1):
            if _signature(m) != sig or [type(c) for c in m.children()] != [
                type(c) for _, c in self.layers
            ]:
                raise ValueError(f"member {i} has a different architecture from member 0")
        self.names = [name for name, _ in sig]
        self.transposed = {
            f"{name}.weight" for name, module in self.layers if isinstance(module, nn.Linear)
        }
        members = [dict(m.named_parameters()) for m in models]
        self.params = {
            name: self.stack([p[name].detach() for p in members], name, device).requires_grad_(True)
            for name in self.names
        }

    def stack(self, tensors: Sequence[torch.Tensor], name: str, device) -> torch.Tensor:
        """Stack per-member tensors of parameter ``name`` into the stored layout."""
        out = torch.stack([t.to(device) for t in tensors])
        return out.transpose(1, 2).contiguous() if name in self.transposed else out

    def member(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's parameters (views) in the layout of its module."""
        return {
            name: p[i].T if name in self.transposed else p[i] for name, p in self.params.items()
        }

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """x: (N, B, ...) per-member batches, or with ``shared`` (B, ...) fed to every member.

        Returns logits (N, B, out).
        """
        for name, module in self.layers:
            if isinstance(module, nn.Flatten):
                # As nn.Flatten: everything after the leading (member and) batch dimensions.
                x = x.flatten(1 if shared else 2)
            elif isinstance(module, nn.Linear):
                w = self.params[f"{name}.weight"]  # (N, in, out)
                b = self.params.get(f"{name}.bias")
                if shared:  # broadcast the first matmul over members
                    x = torch.matmul(x, w)
                    x = x + b.unsqueeze(1) if b is not None else x
                    shared = False
                else:
                    x = torch.baddbmm(b.unsqueeze(1), x, w) if b is not None else torch.bmm(x, w)
            else:
                x = _ACTIVATIONS[type(module)](x)
        return x


def train_population(
    models: Sequence[nn.Module],
    data,
    config: TrainConfig | None = None,
    *,
    masks: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    data_seeds: Sequence[int] | None = None,
    start_step: int = 0,
    checkpoint_steps: Sequence[int] = (),
    progress: bool = True,
    **overrides,
) -> list[TrainResult]:
    """Train N same-architecture MLPs at once; each is updated in place. Returns N ``TrainResult``s.

    Args mirror ``train``: ``masks[i]`` and ``data_seeds[i]`` belong to member i (default: no mask,
    data seed i). Checkpoints are per member. All members share ``config``.
    The members' batches are gathered from ``data.train`` with each member's own permutation, so
    inputs are (N, batch, features); evaluation feeds the shared val/test sets to all members.
    """
    from tqdm.auto import tqdm

    if not models:
        raise ValueError("train_population needs at least one model")
    cfg = _as_config(config, overrides)
    n = len(models)
    masks = list(masks) if masks is not None else [None] * n
    data_seeds = list(data_seeds) if data_seeds is not None else list(range(n))
    if len(masks) != n or len(data_seeds) != n:
        raise ValueError(f"got {n} models but {len(masks)} masks and {len(data_seeds)} data seeds")
    if not 0 <= start_step <= cfg.steps:
        raise ValueError(f"start_step={start_step} must lie in [0, steps={cfg.steps}]")

    X, y = data.train
    dev = X.device
    net = _StackedMLP(models, dev)
    named = {k for m in masks if m is not None for k in m}
    bad = sorted(named - set(net.names))
    if bad:
        raise ValueError(f"masks name {bad}, which are not parameters; parameters are {net.names}")
    mask_names = [name for name in net.names if name in named]
    stacked_masks = []
    for name in mask_names:
        ones = torch.ones(net.member(0)[name].shape, device=dev)
        per_member = [
            m[name].to(dev, ones.dtype) if m is not None and name in m else ones for m in masks
        ]
        stacked_masks.append(net.stack(per_member, name, dev))
    masked = [net.params[k] for k in mask_names]
    with torch.no_grad():
        if masked:
            torch._foreach_mul_(masked, stacked_masks)
    optimizer = make_optimizer(list(net.params.values()), cfg)

    # One (N, batch) index tensor per step: row i is member i's own batch.
    batches = batch_indices(len(y), cfg.batch_size, data_seeds, start_step, cfg.steps, dev)
    wanted = set(checkpoint_steps)
    checkpoints: list[dict[int, dict[str, torch.Tensor]]] = [{} for _ in range(n)]
    records: list[tuple[int, torch.Tensor]] = []
    running = torch.zeros(n, device=dev)
    since_eval = 0
    chunk = 1000
    started = time.perf_counter()

    def snapshot(step: int) -> None:
        for i in range(n):
            checkpoints[i][step] = {k: v.detach().clone() for k, v in net.member(i).items()}

    @torch.no_grad()
    def evaluate(split) -> torch.Tensor:
        Xs, ys = split
        sums = torch.zeros(2, n, device=dev)
        for i in range(0, len(ys), chunk):
            loss, correct = loss_and_correct(
                net.forward(Xs[i : i + chunk], shared=True), ys[i : i + chunk]
            )
            sums += torch.stack([loss.sum(-1), correct.sum(-1).to(loss.dtype)])
        return sums / len(ys)

    def record(step: int) -> torch.Tensor:
        nonlocal running, since_eval
        val, test = evaluate(data.val), evaluate(data.test)
        train_loss = running / since_eval if since_eval else torch.full((n,), math.nan, device=dev)
        records.append((step, torch.stack([train_loss, val[0], val[1], test[1]])))
        running, since_eval = torch.zeros(n, device=dev), 0
        return records[-1][1]

    bar = tqdm(total=cfg.steps - start_step, disable=not progress, desc=f"train ×{n}", leave=False)
    if start_step in wanted:
        snapshot(start_step)
    record(start_step)
    alive = torch.ones(n, dtype=torch.bool, device=dev)
    diverged_at: list[int | None] = [None] * n
    for step, idx in enumerate(batches, start=start_step):
        losses = mean_loss(net.forward(X[idx]), y[idx])
        optimizer.zero_grad()  # None grads let backward write them without an extra pass
        # A diverged member is frozen at its last weights instead of poisoning the others.
        torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
        with torch.no_grad():
            if masked:
                torch._foreach_mul_([p.grad for p in masked], stacked_masks)
            # Fresh optimizer, zeroed weights, masked gradients: pruned weights cannot move (as in
            # ``train``), so no re-zeroing pass is needed.
            optimizer.step(cfg.lr_at(step))
            running += losses.detach()
        since_eval += 1
        done = step + 1
        if done in wanted:
            snapshot(done)
        if done % cfg.eval_every == 0 or done == cfg.steps:
            bar.update(done - start_step - bar.n)
            row = record(done)
            finite = torch.isfinite(row[:2]).all(0)
            newly = (alive & ~finite).tolist()
            for i, is_new in enumerate(newly):
                if is_new:
                    diverged_at[i] = done
            alive &= finite
            if not bool(alive.any()):
                break
    bar.close()
    wall = time.perf_counter() - started

    steps = [s for s, _ in records]
    # (evals, 4, N): one transfer at the end; float64 like the history ``train`` builds.
    table = torch.stack([r for _, r in records]).cpu().double()
    results = []
    for i, model in enumerate(models):
        trained = net.member(i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(trained[name])
        history = pd.DataFrame(
            {
                "step": steps,
                "train_loss": table[:, 0, i].numpy(),
                "val_loss": table[:, 1, i].numpy(),
                "val_acc": table[:, 2, i].numpy(),
                "test_acc": table[:, 3, i].numpy(),
            }
        )
        message = ""
        if diverged_at[i] is not None:
            message = (
                f"member {i} diverged by step {diverged_at[i]}: the loss became NaN or infinite. "
                f"Lower the learning rate (lr={cfg.lr:g})."
            )
            history = history[history["step"] <= diverged_at[i]].reset_index(drop=True)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        results.append(
            TrainResult(
                history=history,
                config=cfg,
                checkpoints=checkpoints[i],
                diverged=diverged_at[i] is not None,
                message=message,
                wall_time=wall,
                model=model,
            )
        )
    return results
