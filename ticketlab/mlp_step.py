"""A plain MLP's training loss and gradients by hand: the ATen calls autograd makes, no graph.

``train`` spends about a tenth of a LeNet-300-100 step (batch 60, one CPU thread) recording
autograd's graph and walking it back (benchmarks/trainer.py). For the models where the backward
pass is short enough to write out, ``MLPGrad`` does it directly: the forward pass keeps each
layer's output, and the backward pass calls the same ATen operations as autograd's derivative
formulas, on the same operands in the same memory layouts, so the gradients are bit for bit
the ones ``loss.backward()`` writes (``tests/test_mlp_step.py`` checks that against autograd,
the independent oracle). For a layer ``h = act(x Wᵀ + b)`` with upstream gradient ``g``
(shape (B, out)), and cross-entropy ``L = mean(nll(log_softmax(z)))`` on top:

* ``∂L/∂z``:  ``_log_softmax_backward_data(nll_loss_backward(1, …))``; for one logit (binary
  cross-entropy with logits, as ``training.mean_loss``), autograd's formula
  ``(sigmoid(z) − y) · 1 / B``
* ``∂L/∂W = gᵀ x`` (``torch.mm(g.t(), x)``, shape (out, in), W's own layout)
* ``∂L/∂b = Σ_batch g`` and ``∂L/∂x = g W``, then through the activation of the layer below:
  ``threshold_backward(·, h, 0)`` for ReLU, ``tanh_backward(·, h)`` for tanh.

Which models: an ``nn.Sequential`` of ``Flatten`` (the default dims), ``Linear`` and ``ReLU`` /
``Tanh`` (exact types: a subclass may compute something else), a ``Linear`` first (after an
optional ``Flatten``) and last, no hooks and no shared parameters.
``MLPGrad.of(model)`` is None for anything else, and a call returns None (nothing written) for
inputs it was not written for; the caller then uses autograd.

**A population of MLPs** (``ticketlab.population``): ``MLPGrad.of(model, stacked=params)`` does the
same for N members whose parameters are stacked along a leading dimension, Linear weights stored
transposed as (N, in, out). It reproduces the population's autograd step bit for bit: forward by
``baddbmm``; each member's loss ``L_i`` is its mean cross-entropy, or binary cross-entropy for
one logit (reduction "none", then a mean over the batch); the gradient is that of
``Σ_i alive_i · L_i``, the population's ``torch.where(alive, losses, 0).sum().backward()``, so per
example ``alive_i / B`` enters ``nll_loss_backward`` (reduction "none"), or multiplies
``sigmoid(z) − y``. Per layer, with g of shape (N, B, out):
``∂L/∂W = xᵀ g`` (``x.transpose(1, 2).bmm(g)``, (N, in, out)), ``∂L/∂b = Σ_batch g`` and
``∂L/∂x = g Wᵀ`` (``g.bmm(w.transpose(1, 2))``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .optim import without_grad

__all__ = ["MLPGrad"]

_aten = torch.ops.aten
_NONE, _MEAN = 0, 1  # ATen's reduction codes
_IGNORE_INDEX = -100  # F.cross_entropy's default


def _has_hooks(module: nn.Module) -> bool:
    return any(
        getattr(module, name, None)
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks")
    )  # fmt: skip


def _plain_layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The model's (name, layer) pairs when the module docstring's conditions hold, else None."""
    if not isinstance(model, nn.Sequential):
        return None
    layers = list(model.named_children())
    modules = [m for _, m in layers]
    linears = [m for m in modules if type(m) is nn.Linear]
    # Exact types: a subclass may compute something else in its forward.
    plain = all(
        type(m) in (nn.Linear, nn.ReLU, nn.Tanh)
        or (type(m) is nn.Flatten and (m.start_dim, m.end_dim) == (1, -1))
        for m in modules
    )
    if not plain or not linears or type(modules[-1]) is not nn.Linear:
        return None
    if any(type(m) is nn.Flatten for m in modules[1:]):
        return None
    if type(next(m for m in modules if type(m) is not nn.Flatten)) is not nn.Linear:
        return None  # an activation first would work in place on the caller's batch
    if any(_has_hooks(m) for m in model.modules()) or any(
        isinstance(m, nn.ReLU) and m.inplace for m in modules
    ):
        return None
    params = [p for _, p in model.named_parameters(remove_duplicate=False)]
    if len({id(p) for p in params}) != len(params):
        return None  # a shared parameter would need its gradients summed
    return layers


class MLPGrad:
    """Loss and gradients of a plain MLP (or a stacked population of them), written into its
    parameters' ``.grad``.

    ``MLPGrad.of(model)`` (None unless the module docstring's conditions hold); then
    ``grads(X, y)`` with X (B, ...) on the model's device and y (B,) int64 class indices returns
    the batch's mean cross-entropy (binary for one logit; a 0-d tensor) after setting ``.grad``
    of every parameter that requires one to what ``loss.backward()`` would write into gradients
    that were ``None``.
    A gradient already there is replaced, not added to as ``backward()`` would: a trainer calling
    this every step needs no ``zero_grad``.

    ``MLPGrad.of(model, stacked=params)``: ``params`` maps each of ``model``'s parameter names to
    the members' stacked tensor (Linear weights (N, in, out)); then ``grads(X, y, alive)`` with X
    (N, B, ...), y (N, B) int64 and ``alive`` (N,) bool returns the members' mean losses (N,) and
    writes the stacked tensors' ``.grad`` (module docstring).
    """

    def __init__(self, layers: list[tuple[str, nn.Module]], stacked=None) -> None:
        self.flatten = type(layers[0][1]) is nn.Flatten
        self.stacked = stacked is not None
        # One logit: binary cross-entropy with logits, as training.mean_loss computes it.
        self.binary = [m for _, m in layers if type(m) is nn.Linear][-1].out_features == 1
        # The plan, decided once: (weight, bias) per Linear, or the activation's name.
        self.plan = []
        for name, m in layers:
            if type(m) is nn.Linear and stacked is not None:
                self.plan.append((stacked[f"{name}.weight"], stacked.get(f"{name}.bias")))
            elif type(m) is nn.Linear:
                self.plan.append((m.weight, m.bias))
            elif type(m) is not nn.Flatten:
                self.plan.append(type(m).__name__)

    @classmethod
    def of(
        cls, model: nn.Module, stacked: Mapping[str, torch.Tensor] | None = None
    ) -> MLPGrad | None:
        layers = _plain_layers(model)
        if layers is None:
            return None
        if stacked is not None and set(stacked) != {n for n, _ in model.named_parameters()}:
            return None  # not this model's parameters
        return cls(layers, stacked)

    def _linear(self, h, weight, bias):
        if self.stacked:  # weight (N, in, out)
            return (
                torch.bmm(h, weight)
                if bias is None
                else torch.baddbmm(bias.unsqueeze(1), h, weight)
            )
        return torch.mm(h, weight.t()) if bias is None else torch.addmm(bias, h, weight.t())

    def _linear_backward(self, g, x, weight, bias, needs_input_grad: bool):
        """Write the layer's parameter gradients; return ∂L/∂x (None for the first layer)."""
        if weight.requires_grad:
            weight.grad = x.transpose(1, 2).bmm(g) if self.stacked else torch.mm(g.t(), x)
        if bias is not None and bias.requires_grad:
            bias.grad = g.sum(1 if self.stacked else 0)
        if not needs_input_grad:
            return None
        return g.bmm(weight.transpose(1, 2)) if self.stacked else torch.mm(g, weight)

    def _loss_and_grad(self, z, y, alive):
        """The loss (0-d, or (N,) stacked) and its gradient with respect to the logits z."""
        if self.binary:
            return self._binary_loss_and_grad(z, y, alive)
        if not self.stacked:
            logp = torch._log_softmax(z, 1, False)
            loss, total_weight = _aten.nll_loss_forward(logp, y, None, _MEAN, _IGNORE_INDEX)
            g = _aten.nll_loss_backward(
                torch.ones_like(loss), logp, y, None, _MEAN, _IGNORE_INDEX, total_weight
            )
            return loss, torch._log_softmax_backward_data(g, logp, 1, logp.dtype)
        n, b, c = z.shape
        target = y.reshape(-1)
        logp = torch._log_softmax(z.reshape(-1, c), 1, False)
        per_example, total_weight = _aten.nll_loss_forward(logp, target, None, _NONE, _IGNORE_INDEX)
        losses = per_example.view(n, b).mean(-1)
        # Autograd's chain for sum → where → mean: a member's weight alive_i, spread as 1/B.
        upstream = (alive.to(z.dtype).unsqueeze(-1).expand(n, b) / b).reshape(-1)
        g = _aten.nll_loss_backward(
            upstream, logp, target, None, _NONE, _IGNORE_INDEX, total_weight
        )
        g = torch._log_softmax_backward_data(g, logp, 1, logp.dtype)
        return losses, g.view(n, b, c)

    def _binary_loss_and_grad(self, z, y, alive):
        """``_loss_and_grad`` for one logit: autograd's derivative of binary cross-entropy with
        logits, (sigmoid(z) − y) times the upstream gradient (÷ B for the mean), through
        ``squeeze(-1)``; z is (B, 1), or (N, B, 1) stacked."""
        logit = z.squeeze(-1)
        target = y.to(z.dtype)
        if not self.stacked:
            loss = torch.binary_cross_entropy_with_logits(logit, target, None, None, _MEAN)
            # The upstream gradient is 1 (× 1 is exact), spread over the batch by the mean.
            return loss, ((logit.sigmoid() - target) / logit.numel()).unsqueeze(-1)
        n, b = logit.shape
        per_example = torch.binary_cross_entropy_with_logits(logit, target, None, None, _NONE)
        # Autograd's chain for sum → where → mean: a member's weight alive_i, spread as 1/B.
        upstream = alive.to(z.dtype).unsqueeze(-1).expand(n, b) / b
        return per_example.mean(-1), ((logit.sigmoid() - target) * upstream).unsqueeze(-1)

    @without_grad
    def grads(
        self, X: torch.Tensor, y: torch.Tensor, alive: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """The mean loss (per member when stacked) after writing the gradients; None (nothing
        written) when X, y or alive are not what this was written for (then use autograd)."""
        batch_dims = 2 if self.stacked else 1
        if y.dtype != torch.long or y.dim() != batch_dims:
            return None
        if self.stacked and (
            alive is None or alive.dtype != torch.bool or alive.shape != y.shape[:1]
        ):
            return None
        h = X.flatten(batch_dims) if self.flatten else X
        if h.dim() != batch_dims + 1 or h.shape[:batch_dims] != y.shape:
            return None
        # Forward, keeping what the backward pass reads: each Linear's input, and each
        # activation's output (ReLU and tanh differentiate through their result).
        kept = []
        for step in self.plan:
            if step == "ReLU":
                h = torch.relu_(h)  # in place: the matmul's output is not needed again
            elif step == "Tanh":
                h = torch.tanh_(h)
            else:
                kept.append(h)
                h = self._linear(h, *step)
                continue
            kept.append(h)
        loss, g = self._loss_and_grad(h, y, alive)
        # Backward, last layer first; the first Linear's input needs no gradient.
        for i in range(len(self.plan) - 1, -1, -1):
            step = self.plan[i]
            if step == "ReLU":
                g = _aten.threshold_backward(g, kept[i], 0)
            elif step == "Tanh":
                g = _aten.tanh_backward(g, kept[i])
            else:
                g = self._linear_backward(g, kept[i], *step, needs_input_grad=i > 0)
        return loss
