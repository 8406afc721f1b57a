"""Counting the floating-point work of one MLP training step, matmul by matmul.

A Linear layer with ``fan_in`` inputs and ``fan_out`` outputs on a batch of B examples runs
three matmuls per training step, each of B·fan_in·fan_out multiply-adds (2 FLOPs each):

    forward            y  = x @ Wᵀ     (B × in) · (in × out)
    weight gradient    dW = dyᵀ @ x    (out × B) · (B × in)
    input gradient     dx = dy @ W     (B × out) · (out × in)   (not for the first layer:
                                                                  its input is the data)

For LeNet-300-100 at batch 60 that is forward 2·60·(784·300 + 300·100 + 100·10) = 31,944,000,
weight gradients the same, input gradients 2·60·(300·100 + 100·10) = 3,720,000: 67,608,000
FLOPs per step. Bias adds, activations, the loss and the optimizer update are not counted:
they are O(B·Σout + parameters), under 1 % of the matmuls here. Pruned weights are counted as
work, since dense kernels multiply them (by zero) all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

__all__ = ["LENET_300_100", "mlp_step_flops", "mlp_step_matmuls"]

LENET_300_100 = (784, 300, 100, 10)


def mlp_step_matmuls(sizes: Sequence[int], batch: int) -> list[tuple[str, int, int, int]]:
    """The matmuls of one training step of an MLP with layer widths ``sizes`` (inputs first).

    Returns (kind, m, k, n) per matmul, an (m × k) · (k × n) product, in the order forward
    (layer 1…L), weight gradients (L…1), input gradients (L…2), as backpropagation runs them.
    """
    if len(sizes) < 2 or any(s < 1 for s in sizes) or batch < 1:
        raise ValueError(f"need >= 2 positive layer widths and batch >= 1, got {sizes}, {batch}")
    layers = list(pairwise(sizes))
    forward = [("forward", batch, fan_in, fan_out) for fan_in, fan_out in layers]
    weight = [("weight_grad", fan_out, batch, fan_in) for fan_in, fan_out in reversed(layers)]
    inputs = [("input_grad", batch, fan_out, fan_in) for fan_in, fan_out in reversed(layers[1:])]
    return forward + weight + inputs


def mlp_step_flops(sizes: Sequence[int], batch: int) -> dict[str, int]:
    """FLOPs of one training step (see the module docstring), by kind and in total."""
    counts = {"forward": 0, "weight_grad": 0, "input_grad": 0}
    for kind, m, k, n in mlp_step_matmuls(sizes, batch):
        counts[kind] += 2 * m * k * n
    return {**counts, "total": sum(counts.values())}
