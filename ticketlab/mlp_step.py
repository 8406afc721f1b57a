"""A plain MLP's training loss and gradients by hand: the ATen calls autograd makes, no graph.

``train`` spends about a tenth of a LeNet-300-100 step (batch 60, one CPU thread) recording
autograd's graph and walking it back (benchmarks/trainer.py). For the models where the backward
pass is short enough to write out, ``MLPGrad`` does it directly: the forward pass keeps each
layer's output, and the backward pass calls the same ATen operations as autograd's derivative
formulas, on the same operands in the same memory layouts, so the gradients are bit for bit
the ones ``loss.backward()`` writes (``tests/test_mlp_step.py`` checks that against autograd,
the independent oracle). For a layer ``h = act(x Wᵀ + b)`` with upstream gradient ``g``
(shape (B, out)), and cross-entropy ``L = mean(nll(log_softmax(z)))`` on top:

* ``∂L/∂z``:  ``_log_softmax_backward_data(nll_loss_backward(1, …))``
* ``∂L/∂W = gᵀ x`` (``torch.mm(g.t(), x)``, shape (out, in), W's own layout)
* ``∂L/∂b = Σ_batch g`` and ``∂L/∂x = g W``, then through the activation of the layer below:
  ``threshold_backward(·, h, 0)`` for ReLU, ``tanh_backward(·, h)`` for tanh.

Which models: an ``nn.Sequential`` of ``Flatten`` (the default dims), ``Linear`` and ``ReLU`` /
``Tanh`` (exact types: a subclass may compute something else), a ``Linear`` first (after an
optional ``Flatten``) and last, with at least two classes (one
logit uses binary cross-entropy: autograd trains those), no hooks and no shared parameters.
``MLPGrad.of(model)`` is None for anything else, and a call returns None (nothing written) for
inputs it was not written for; the caller then uses autograd.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPGrad"]

_aten = torch.ops.aten
_MEAN = 1  # ATen's reduction code for "mean"
_IGNORE_INDEX = -100  # F.cross_entropy's default


def _has_hooks(module: nn.Module) -> bool:
    return any(
        getattr(module, name, None)
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks")
    )  # fmt: skip


class MLPGrad:
    """Loss and gradients of a plain MLP, written into its parameters' ``.grad``.

    ``MLPGrad.of(model)`` (None unless the module docstring's conditions hold); then
    ``grads(X, y)`` with X (B, ...) on the model's device and y (B,) int64 class indices returns
    the batch's mean cross-entropy (a 0-d tensor) after setting ``.grad`` of every parameter
    that requires one, as ``loss.backward()`` would on gradients that were ``None``.
    """

    def __init__(self, layers: list[nn.Module]) -> None:
        self.flatten = type(layers[0]) is nn.Flatten
        # The plan, decided once: (weight, bias) per Linear, or the activation's name.
        self.plan = [
            (m.weight, m.bias) if type(m) is nn.Linear else type(m).__name__
            for m in layers
            if type(m) is not nn.Flatten
        ]

    @classmethod
    def of(cls, model: nn.Module) -> MLPGrad | None:
        if not isinstance(model, nn.Sequential):
            return None
        layers = list(model)
        linears = [m for m in layers if type(m) is nn.Linear]
        # Exact types: a subclass may compute something else in its forward.
        plain = all(
            type(m) in (nn.Linear, nn.ReLU, nn.Tanh)
            or (type(m) is nn.Flatten and (m.start_dim, m.end_dim) == (1, -1))
            for m in layers
        )
        if not plain or not linears or type(layers[-1]) is not nn.Linear:
            return None
        if linears[-1].out_features < 2 or any(type(m) is nn.Flatten for m in layers[1:]):
            return None
        if type(next(m for m in layers if type(m) is not nn.Flatten)) is not nn.Linear:
            return None  # an activation first would work in place on the caller's batch
        if any(_has_hooks(m) for m in model.modules()) or any(
            isinstance(m, nn.ReLU) and m.inplace for m in layers
        ):
            return None
        params = [p for _, p in model.named_parameters(remove_duplicate=False)]
        if len({id(p) for p in params}) != len(params):
            return None  # a shared parameter would need its gradients summed
        return cls(layers)

    @torch.no_grad()
    def grads(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The batch's mean loss after writing the gradients; None (nothing written) when X or y
        are not what this was written for (then use autograd)."""
        if y.dtype != torch.long or y.dim() != 1:
            return None
        h = X.flatten(1) if self.flatten else X
        if h.dim() != 2:
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
                weight, bias = step
                h = torch.mm(h, weight.t()) if bias is None else torch.addmm(bias, h, weight.t())
                continue
            kept.append(h)
        logp = torch._log_softmax(h, 1, False)
        loss, total_weight = _aten.nll_loss_forward(logp, y, None, _MEAN, _IGNORE_INDEX)
        g = _aten.nll_loss_backward(
            torch.ones_like(loss), logp, y, None, _MEAN, _IGNORE_INDEX, total_weight
        )
        g = _aten._log_softmax_backward_data(g, logp, 1, logp.dtype)
        # Backward, last layer first; the first Linear's input needs no gradient.
        for i in range(len(self.plan) - 1, -1, -1):
            step = self.plan[i]
            if step == "ReLU":
                g = _aten.threshold_backward(g, kept[i], 0)
            elif step == "Tanh":
                g = _aten.tanh_backward(g, kept[i])
            else:
                weight, bias = step
                if weight.requires_grad:
                    weight.grad = torch.mm(g.t(), kept[i])
                if bias is not None and bias.requires_grad:
                    bias.grad = g.sum(0)
                if i > 0:
                    g = torch.mm(g, weight)
        return loss
