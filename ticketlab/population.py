"""Population training: many independent networks of one architecture trained as one computation.

Lottery-ticket science needs many runs of the same small network: hundreds of XOR seeds, IMP over
several seeds and controls. Trained one after another, a small network spends its time in Python
and kernel-launch overhead. Here N networks are stacked into tensors with a leading member
dimension and each step runs all members at once, in one of two ways behind one interface:

* **MLPs** (``nn.Sequential`` of ``Flatten``, ``Linear``, ``ReLU``, ``Tanh``: ``xor_mlp``,
  ``lenet_300_100``): one batched matmul (``torch.baddbmm``) per layer, hand-written because it
  is as fast as ``torch.func`` or faster for them (``benchmarks/population.py``); the backward
  pass by hand too (``ticketlab.mlp_step``, autograd's bits; cross-entropy, or binary
  cross-entropy for one logit).
* **Any other module** (conv nets, ResNets with BatchNorm): PyTorch's model-ensembling recipe,
  ``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``. BatchNorm's running
  statistics are stacked buffers too, so each member keeps its own, updated in training mode and
  used in evaluation exactly as ``train`` does.

Every member stays independent: it has its own initialization, masks, data order (its own
``data_seed``) and optimizer state. The loss is the sum of the members' mean losses, so each
member's gradient is exactly its own; Adam and SGD act element-wise, so one optimizer over the
stacked tensors equals N optimizers. Results match ``train`` run on each member separately up to
floating-point summation order (tested). ``train_many`` chooses a population or one-by-one
training for a list of models, by what the benchmark measured to be faster.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from .masks import as_mask
from .mlp_step import MLPGrad
from .optim import make_optimizer
from .training import (
    MaskRules,
    Recorder,
    TrainConfig,
    TrainResult,
    _as_config,
    batch_indices,
    check_steps,
    loss_and_correct,
    mean_loss,
    train,
)

__all__ = ["prefers_population", "supports", "train_many", "train_population"]

_ACTIVATIONS = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh}


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model.named_children())
    ok = all(isinstance(m, (nn.Flatten, nn.Linear, *_ACTIVATIONS)) for _, m in children)
    return children if ok else None


def supports(model: nn.Module) -> bool:
    """True if ``model`` can be trained in a population: any module without dropout (whose noise a
    population would draw differently from ``train``, breaking their equivalence)."""
    return not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())


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
            name: self.stack([p[name].detach() for p in members], name, device)
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

    def state(self, i: int) -> dict[str, torch.Tensor]:
        """A clone of member i's ``state_dict`` (an MLP has parameters only)."""
        return {k: v.detach().clone() for k, v in self.member(i).items()}

    def forward(self, x: torch.Tensor, shared: bool = False, training: bool = True) -> torch.Tensor:
        """x: (N, B, ...) per-member batches, or with ``shared`` (B, ...) fed to every member.

        Returns logits (N, B, out). ``training`` changes nothing in an MLP.
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


class _FunctionalStack:
    """Any module's members stacked with ``torch.func`` (PyTorch's model-ensembling recipe).

    ``params`` and ``buffers`` map each name of the module's ``state_dict`` to a tensor with a
    leading member dimension (``stack_module_state``). The forward pass is
    ``vmap(functional_call)`` over a "meta" copy of member 0 that holds no data, so BatchNorm's
    in-place running-statistics updates land in each member's own buffers.
    """

    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        first = models[0]
        layout = _layout(first)
        for i, m in enumerate(models[1:], start=1):
            if _layout(m) != layout:
                raise ValueError(f"member {i} has a different architecture from member 0")
        from torch.func import stack_module_state

        members = [copy.deepcopy(m).to(device) for m in models]
        params, self.buffers = stack_module_state(members)
        self.params = {n: p.detach() for n, p in params.items()}
        self.names = list(self.params)
        self.base = copy.deepcopy(first).to("meta")

    def stack(self, tensors: Sequence[torch.Tensor], name: str, device) -> torch.Tensor:
        return torch.stack([t.to(device) for t in tensors])

    def member(self, i: int) -> dict[str, torch.Tensor]:
        return {name: p[i] for name, p in self.params.items()}

    def state(self, i: int) -> dict[str, torch.Tensor]:
        tensors = {**self.params, **self.buffers}
        return {k: tensors[k][i].detach().clone() for k in self.base.state_dict()}

    def forward(self, x: torch.Tensor, shared: bool = False, training: bool = True) -> torch.Tensor:
        """x: (N, B, ...) per-member batches, or with ``shared`` (B, ...) fed to every member.

        Returns logits (N, B, classes). ``training`` selects the modules' mode (BatchNorm: batch
        statistics and running-statistics updates, or the running statistics).
        """
        from torch.func import functional_call, vmap

        def one(params, buffers, inputs):
            return functional_call(self.base, (params, buffers), (inputs,))

        self.base.train(training)
        return vmap(one, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, x)


def _layout(model: nn.Module) -> list:
    """What must agree between members: module types, and each tensor's name, shape and dtype."""
    tensors = [(n, tuple(t.shape), t.dtype) for n, t in model.state_dict().items()]
    return [type(m) for m in model.modules()] + tensors


def _stack(models: Sequence[nn.Module], device: torch.device):
    """The population's stacked form: the MLP fast path when it applies, else ``torch.func``."""
    bad = [type(m).__name__ for m in models if not supports(m)]
    if bad:
        raise TypeError(
            f"population training cannot train {bad[0]}: it has dropout, whose noise a "
            "population would draw differently from ticketlab.train; train it with ticketlab.train"
        )
    if _layers(models[0]) is not None:
        return _StackedMLP(models, device)
    return _FunctionalStack(models, device)


def prefers_population(models: Sequence[nn.Module], device: torch.device) -> bool:
    """Whether ``train_many`` trains ``models`` as a population by default: never one model
    alone; MLPs everywhere (the batched-matmul path: 1.83–2.11× sequential at N = 8 at two
    threads on 2 CPU cores; at one thread 0.81× before its by-hand backward pass and 0.92× with
    it, 2026-12-03: its batched matmuls took 1.13× the time of the members' own in a profile;
    a result's last bits depend on this choice, so it is not made by thread count); other models
    (``torch.func``) on a GPU. On a CPU they train one by one: at one thread, the
    default on two cores (``config.threads``), conv4 measured 0.76–0.79× sequential and ResNet-8
    0.65–0.75× (``benchmarks/population.py``, 2026-12-03); only at two threads did ResNet-8 gain
    (1.18–1.26×, 2026-12-02)."""
    if len(models) < 2 or not all(supports(m) for m in models):
        # One model: ``train`` is the fastest path (a population of one measured 1.2× slower
        # per step, benchmarks/population.py ``versus_train``).
        return False
    return _layers(models[0]) is not None or torch.device(device).type == "cuda"


def train_population(
    models: Sequence[nn.Module],
    data,
    config: TrainConfig | None = None,
    *,
    masks: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    grad_masks: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    data_seeds: Sequence[int] | None = None,
    start_step: int = 0,
    checkpoint_steps: Sequence[int] = (),
    progress: bool = True,
    **overrides,
) -> list[TrainResult]:
    """Train N same-architecture models at once, each in place; returns N ``TrainResult``s.

    Args mirror ``train`` and follow its contract (``ticketlab.training.Recorder``): ``masks[i]``,
    ``grad_masks[i]`` and ``data_seeds[i]`` belong to member i (default: none, none, data seed i).
    Checkpoints are per member. All members share ``config``. The members' batches are gathered
    from ``data.train`` with each member's own permutation, so inputs are (N, batch, features);
    evaluation feeds the shared val/test sets to all members.
    """
    from tqdm.auto import tqdm

    if not models:
        raise ValueError("train_population needs at least one model")
    cfg = _as_config(config, overrides)
    n = len(models)
    masks = list(masks) if masks is not None else [None] * n
    grad_masks = list(grad_masks) if grad_masks is not None else [None] * n
    data_seeds = list(data_seeds) if data_seeds is not None else list(range(n))
    if len(masks) != n or len(data_seeds) != n or len(grad_masks) != n:
        raise ValueError(
            f"got {n} models but {len(masks)} masks, {len(grad_masks)} grad_masks and "
            f"{len(data_seeds)} data seeds"
        )
    check_steps(cfg, start_step, checkpoint_steps)

    X, y = data.train
    dev = X.device
    for model in models:
        model.to(dev)
    net = _stack(models, dev)
    grad_masks = _freeze_as_train_does(net, models, grad_masks)
    rules = MaskRules(
        _stack_masks(net, models, masks, "masks"),
        _stack_masks(net, models, grad_masks, "grad_masks"),
        cfg.weight_decay,
    )
    trainable = [p for p in net.params.values() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    optimizer = make_optimizer(trainable, cfg)
    # Stacked plain MLPs: the gradients by hand, bit for bit autograd's without its graph.
    by_hand = MLPGrad.of(models[0], stacked=net.params) if isinstance(net, _StackedMLP) else None
    chunk = 1000

    @torch.no_grad()
    def evaluate(split) -> torch.Tensor:
        Xs, ys = split
        sums = torch.zeros(2, n, device=dev)
        for i in range(0, len(ys), chunk):
            logits = net.forward(Xs[i : i + chunk], shared=True, training=False)
            loss, correct = loss_and_correct(logits, ys[i : i + chunk])
            sums += torch.stack([loss.sum(-1), correct.sum(-1).to(loss.dtype)])
        return sums / len(ys)

    def evaluate_now() -> torch.Tensor:
        val, test = evaluate(data.val), evaluate(data.test)
        return torch.stack([val[0], val[1], test[1]])

    def snapshot() -> list[dict[str, torch.Tensor]]:
        return [net.state(i) for i in range(n)]

    bar = tqdm(total=cfg.steps - start_step, disable=not progress, desc=f"train ×{n}", leave=False)
    recorder = Recorder(n, cfg, start_step, checkpoint_steps, evaluate_now, snapshot, dev, bar)
    # One (N, batch) index tensor per step: row i is member i's own batch.
    batches = batch_indices(len(y), cfg.batch_size, data_seeds, start_step, cfg.steps, dev)
    for step, idx in enumerate(batches, start=start_step):
        # A diverged member's loss is left out, so its NaNs cannot reach the optimizer; it keeps
        # moving under its optimizer state, but the Recorder returns it as it was at divergence.
        # The by-hand pass replaces every .grad (or writes nothing and returns None).
        losses = by_hand.grads(X[idx], y[idx], recorder.alive) if by_hand is not None else None
        if losses is None:
            optimizer.zero_grad()  # None grads let backward write them without an extra pass
            losses = mean_loss(net.forward(X[idx]), y[idx])
            torch.where(recorder.alive, losses, torch.zeros_like(losses)).sum().backward()
        with torch.no_grad():
            rules.mask_grads()
            optimizer.step(cfg.lr_at(step))
            rules.restore()
        if not recorder.step_done(step + 1, losses.detach()):
            break
    bar.close()
    for i, model in enumerate(models):
        model.load_state_dict(net.state(i))
    return recorder.results(models)


def _freeze_as_train_does(net, models, grad_masks) -> list:
    """Give the stacked parameters ``requires_grad`` where any member's parameter has it, and the
    members whose parameter does not a trainability mask of zeros for it: ``train`` never moves a
    parameter with ``requires_grad=False``, so neither does a population."""
    out = [dict(m) if m is not None else None for m in grad_masks]
    for name in net.names:
        flags = [dict(m.named_parameters())[name].requires_grad for m in models]
        net.params[name].requires_grad_(any(flags))
        if any(flags) and not all(flags):
            for i, (model, trains) in enumerate(zip(models, flags, strict=True)):
                if not trains:
                    param = dict(model.named_parameters())[name]
                    out[i] = {**(out[i] or {}), name: torch.zeros_like(param, dtype=torch.bool)}
    return out


def _stack_masks(net, models, masks, what: str) -> list:
    """(stacked parameter, stacked float 0/1 mask) for every name some member's mask names.

    Each member's mask is checked against that member (``as_mask``); members without one, or
    without an entry for a name, keep every element of that parameter.
    """
    checked = [
        None if m is None else as_mask(m, model, f"{what}[{i}]")
        for i, (model, m) in enumerate(zip(models, masks, strict=True))
    ]
    named = {name for m in checked if m is not None for name in m}
    pairs = []
    for name in (name for name in net.names if name in named):
        param = net.params[name]
        ones = torch.ones(net.member(0)[name].shape, device=param.device)
        per_member = [
            m[name].to(param.device, ones.dtype) if m is not None and name in m else ones
            for m in checked
        ]
        pairs.append((param, net.stack(per_member, name, param.device)))
    return pairs


def train_many(
    models: Sequence[nn.Module],
    data,
    config: TrainConfig,
    *,
    masks: Sequence[Mapping[str, torch.Tensor] | None],
    data_seeds: Sequence[int],
    grad_masks: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    start_step: int = 0,
    checkpoint_steps: Sequence[int] = (),
    progress: bool = True,
    population: bool | None = None,
) -> Iterator[TrainResult]:
    """Train ``models`` in place, yielding their ``TrainResult``\\s in order.

    As one population (``train_population``) or one by one (``train``, lazily, so a caller can
    store each result as soon as it exists). ``population``: None picks the faster way as measured
    (``prefers_population``); True trains a population whenever every model ``supports`` it;
    False never. Both ways follow one contract (``ticketlab.training.Recorder``) and agree up to
    floating-point summation order.
    """
    grad_masks = [None] * len(models) if grad_masks is None else list(grad_masks)
    if population is None:
        X, _ = data.train
        population = prefers_population(models, X.device)
    if population and models and all(supports(m) for m in models):
        yield from train_population(
            models, data, config, masks=masks, grad_masks=grad_masks, data_seeds=data_seeds,
            start_step=start_step, checkpoint_steps=checkpoint_steps, progress=progress,
        )  # fmt: skip
        return
    for model, mask, grad_mask, seed in zip(models, masks, grad_masks, data_seeds, strict=True):
        yield train(model, data, config, mask=mask, grad_mask=grad_mask, data_seed=seed,
                    start_step=start_step, checkpoint_steps=checkpoint_steps,
                    progress=progress)  # fmt: skip
