"""ticketlab.recipes: canonical strings, pinned cache keys, overrides and presets."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from ticketlab import recipes
from ticketlab.recipes import DataSpec, ModelSpec, PruneSpec, Recipe
from ticketlab.training import TrainConfig

XOR = Recipe(
    model=ModelSpec("xor_mlp", hidden=8, activation="tanh"),
    data=DataSpec("xor", noise=0.1),
    train=TrainConfig(steps=200, batch_size=4, lr=0.05, milestones=(100,)),
    prune=PruneSpec(layer_rates={"out.weight": 0.5}),
)

# These keys name the folders of users' cached results. If a change to recipes.py (a field's
# default, the canonical string's format, the hash) alters any of them, every cached experiment
# silently stops being found and is recomputed: such a change needs a deliberate decision, a
# note in the changelog, and then new values here. Never "fix" this test by pasting new keys.
PINNED = {
    "defaults": (Recipe(), "e3b0c44298fc1c14"),
    "paper full": (recipes.get("lenet_mnist_paper", budget="full"), "d53277c4c771ebeb"),
    "paper quick": (recipes.get("lenet_mnist_paper", budget="quick"), "ab7561d502991541"),
    "openlth full": (recipes.get("lenet_mnist_openlth", budget="full"), "2ed452a5afcc1df6"),
    "openlth quick": (recipes.get("lenet_mnist_openlth", budget="quick"), "32fc1c0d1dea69a4"),
    "xor": (XOR, "0ab39d4e22f5981c"),
}


@pytest.mark.parametrize("which", PINNED)
def test_pinned_keys_never_change(which):
    recipe, key = PINNED[which]
    assert recipe.key == key


@pytest.mark.parametrize("which", PINNED)
def test_key_is_a_sha256_prefix_of_the_canonical_string(which):
    recipe, _ = PINNED[which]
    assert recipe.key == hashlib.sha256(recipe.canonical.encode()).hexdigest()[:16]


def test_canonical_string_lists_only_non_defaults_sorted():
    assert Recipe().canonical == ""
    assert XOR.canonical == (
        "data.dataset='xor';data.noise=0.1;model.activation='tanh';model.hidden=8;"
        "model.name='xor_mlp';prune.layer_rates=(('out.weight', 0.5),);train.batch_size=4;"
        "train.lr=0.05;train.milestones=(100,);train.steps=200"
    )
    paper = recipes.get("lenet_mnist_paper", budget="full")
    assert paper.canonical == (
        "prune.layer_rates=(('out.weight', 0.1),);train.eval_every=58;train.steps=2320"
    )
    # Setting a field to its default is the same recipe as not setting it.
    assert paper.replace(lr=TrainConfig().lr, init="glorot_normal").key == paper.key


def test_name_is_informational_not_part_of_the_key():
    paper = recipes.get("lenet_mnist_paper", budget="quick")
    assert paper.name == "lenet_mnist_paper"
    assert Recipe(paper.model, paper.data, paper.train, paper.prune).key == paper.key
    assert repr(paper) == f"Recipe('lenet_mnist_paper', key={paper.key}: {paper.canonical})"
    assert repr(Recipe()) == "Recipe(key=e3b0c44298fc1c14: all defaults)"


def test_overrides_route_to_the_owning_part():
    base = recipes.get("lenet_mnist_paper", budget="quick")
    changed = base.replace(
        steps=60, init="kaiming_normal", split_seed=3, prune_scope="global", rewind_step=5
    )
    assert changed.train == base.train.replace(steps=60)
    assert changed.model == ModelSpec("lenet_300_100", init="kaiming_normal")
    assert changed.data == DataSpec("mnist", "5k", split_seed=3)
    assert changed.prune == PruneSpec(0.2, "global", (("out.weight", 0.1),), rewind_step=5)
    assert changed.name == base.name
    assert base.train.steps == 580  # the original is untouched
    assert recipes.get("lenet_mnist_paper", budget="quick", steps=60) == base.replace(steps=60)
    assert recipes.get(base, lr=0.1).train.lr == 0.1  # a Recipe passes through


def test_unknown_field_is_a_type_error_listing_the_valid_fields():
    with pytest.raises(TypeError, match=r"unknown recipe field 'stepz'; valid fields: \[") as err:
        recipes.get("lenet_mnist_paper", budget="quick", stepz=3)
    for valid in ("steps", "lr", "prune_scope", "rewind_step", "hidden", "split_seed"):
        assert repr(valid) in str(err.value)


def test_overrides_are_validated():
    with pytest.raises(ValueError, match="steps must be a positive int"):
        Recipe().replace(steps=0)
    with pytest.raises(ValueError, match="prune_fraction must lie in"):
        Recipe().replace(prune_fraction=1.0)
    with pytest.raises(ValueError, match="prune_scope must be"):
        Recipe().replace(prune_scope="local")
    with pytest.raises(ValueError, match="rewind_step must be >= 0"):
        Recipe().replace(rewind_step=-1)
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        Recipe().replace(name="vgg")
    with pytest.raises(ValueError, match="unknown init"):
        Recipe().replace(init="he")
    with pytest.raises(ValueError, match="unknown dataset"):
        Recipe().replace(dataset="cifar")


def test_presets_differ_between_budgets(monkeypatch):
    for name in recipes.names():
        quick, full = recipes.get(name, budget="quick"), recipes.get(name, budget="full")
        assert quick.train.steps < full.train.steps
        assert quick.key != full.key
        assert quick.replace(steps=full.train.steps) == full
        monkeypatch.setenv("TICKETLAB_QUICK", "1")
        assert recipes.get(name) == quick  # the default budget follows TICKETLAB_QUICK
        monkeypatch.setenv("TICKETLAB_QUICK", "0")
        assert recipes.get(name) == full


def test_presets_follow_their_papers():
    paper = recipes.get("lenet_mnist_paper", budget="full")
    assert (paper.train.optimizer, paper.train.lr, paper.train.batch_size) == ("adam", 1.2e-3, 60)
    assert paper.prune.layer_rates == (("out.weight", 0.1),)
    openlth = recipes.get("lenet_mnist_openlth", budget="full")
    assert (openlth.train.optimizer, openlth.train.lr) == ("sgd", 0.1)
    assert openlth.model.init == "kaiming_normal" and openlth.prune.prune_scope == "global"
    # Budgets are whole epochs of the 3,500-image training split.
    assert paper.train.steps % (3500 // 60) == 0
    assert openlth.train.steps % (3500 // 128) == 0


def test_unknown_preset_and_budget():
    assert recipes.names() == [
        "lenet_mnist_openlth",
        "lenet_mnist_openlth_full",
        "lenet_mnist_paper",
        "lenet_mnist_paper_full",
    ]
    with pytest.raises(ValueError, match=r"unknown recipe 'lenet'; available: \["):
        recipes.get("lenet")
    with pytest.raises(ValueError, match="budget must be 'quick' or 'full'"):
        recipes.get("lenet_mnist_paper", budget="medium")


@pytest.mark.parametrize(
    "spelling",
    [
        {"out.weight": 0.1, "fc1.weight": 0.3},
        {"fc1.weight": 0.3, "out.weight": 0.1},
        [("out.weight", 0.1), ("fc1.weight", 0.3)],
        (("fc1.weight", 0.3), ("out.weight", 0.1)),
    ],
    ids=["dict", "dict-other-order", "list", "sorted-tuple"],
)
def test_layer_rates_have_one_normal_form(spelling):
    spec = PruneSpec(layer_rates=spelling)
    assert spec.layer_rates == (("fc1.weight", 0.3), ("out.weight", 0.1))
    recipe = Recipe(prune=spec)
    reference = Recipe(prune=PruneSpec(layer_rates=(("fc1.weight", 0.3), ("out.weight", 0.1))))
    assert recipe.key == reference.key
    hash(recipe)  # frozen and hashable: usable as a dict key


def test_integer_rate_is_the_same_recipe_as_the_float():
    assert PruneSpec(layer_rates={"out.weight": 0}) == PruneSpec(layer_rates={"out.weight": 0.0})
    openlth = recipes.get("lenet_mnist_openlth", budget="full")
    assert openlth.replace(layer_rates={"out.weight": 0}).key == openlth.key


@pytest.mark.parametrize(
    "spelling", [1, 1.0, np.float64(1), np.float32(1), np.int64(1)], ids=lambda v: repr(v)
)
def test_a_number_has_one_spelling_in_the_key(spelling):
    # The issue that made this a rule: lr=1 and lr=1.0 (and NumPy floats) used to hash apart.
    recipe = recipes.get("lenet_mnist_paper", budget="quick", lr=spelling)
    assert "train.lr=1.0" in recipe.canonical.split(";")
    assert recipe.key == recipes.get("lenet_mnist_paper", budget="quick", lr=1.0).key


def test_an_int_field_is_written_as_an_int():
    recipe = Recipe(train=TrainConfig(steps=500, milestones=(np.int64(100),)))
    assert recipe.canonical == "train.milestones=(100,);train.steps=500"


def test_model_spec_builds_each_model():
    assert ModelSpec("xor_mlp", hidden=3).build(seed=0).fc1.out_features == 3
    assert ModelSpec("conv4", width=4).build(seed=0).conv1.out_channels == 4
    net = ModelSpec("resnet", depth=14, width=2, init="kaiming_normal").build(seed=0)
    assert sum(1 for n in dict(net.named_children()) if n.startswith("block")) == 6
    a, b = ModelSpec().build(seed=1), ModelSpec().build(seed=1)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.fc1.weight, ModelSpec().build(seed=2).fc1.weight)


# -- paper-scale presets and control draws ---------------------------------------------------------

# The keys of the four budgets of the 5k presets as HEAD computed them before ``control_draws``
# and the full-MNIST presets were added (``git show HEAD:ticketlab/recipes.py``). Adding a field
# with a default, or a preset, must leave them alone.
KEYS_BEFORE_CONTROL_DRAWS = {
    ("lenet_mnist_paper", "full"): "d53277c4c771ebeb",
    ("lenet_mnist_paper", "quick"): "ab7561d502991541",
    ("lenet_mnist_openlth", "full"): "2ed452a5afcc1df6",
    ("lenet_mnist_openlth", "quick"): "32fc1c0d1dea69a4",
}


@pytest.mark.parametrize("name, budget", KEYS_BEFORE_CONTROL_DRAWS)
def test_control_draws_leaves_the_existing_presets_unchanged(name, budget):
    recipe = recipes.get(name, budget=budget)
    assert recipe.prune.control_draws == 1
    assert "control_draws" not in recipe.canonical
    assert recipe.key == KEYS_BEFORE_CONTROL_DRAWS[(name, budget)]
    # The default written out is the same recipe; any other count is another one.
    assert recipe.replace(control_draws=1).key == recipe.key
    assert recipe.replace(control_draws=3).key != recipe.key


def test_control_draws_is_in_the_canonical_string_when_not_one():
    recipe = Recipe(prune=PruneSpec(control_draws=3))
    assert recipe.canonical == "prune.control_draws=3"
    assert Recipe().replace(control_draws=np.int64(3)) == recipe  # one spelling per number
    assert type(Recipe().replace(control_draws=np.int64(3)).prune.control_draws) is int


@pytest.mark.parametrize("bad", [0, -1, 1.5, 3.0, "3", None, True])
def test_control_draws_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=r"control_draws must be an int >= 1.*control_draws=3"):
        PruneSpec(control_draws=bad)
    with pytest.raises(ValueError, match="control_draws must be an int >= 1"):
        recipes.get("lenet_mnist_paper", budget="quick", control_draws=bad)


def test_paper_full_follows_frankle_and_carbin():
    # papers.md §1.1 and §1.3: full MNIST (55k / 5k / 10k), 50K iterations at batch 60, Adam
    # 1.2e-3, evaluation every 100 iterations, Gaussian Glorot, layerwise 20 % (output 10 %),
    # each ticket reinitialized three times.
    for budget, steps in (("full", 50_000), ("quick", 5_000)):
        rec = recipes.get("lenet_mnist_paper_full", budget=budget)
        assert rec.name == "lenet_mnist_paper_full"
        assert rec.model == ModelSpec("lenet_300_100", init="glorot_normal")
        assert rec.data == DataSpec("mnist", "full")  # the quick budget too: same data
        assert rec.train == TrainConfig(
            steps=steps, batch_size=60, optimizer="adam", lr=1.2e-3, eval_every=100
        )
        assert rec.prune == PruneSpec(
            prune_fraction=0.2,
            prune_scope="layerwise",
            layer_rates=(("out.weight", 0.1),),
            rewind_step=0,
            control_draws=3,
        )
    full = recipes.get("lenet_mnist_paper_full", budget="full")
    assert full.train.steps // full.train.eval_every == 500  # evaluations per cell
    assert full.canonical == (
        "data.subset='full';prune.control_draws=3;prune.layer_rates=(('out.weight', 0.1),);"
        "train.steps=50000"
    )  # eval_every=100 is TrainConfig's default, so the string leaves it out


def test_openlth_full_follows_open_lth():
    # prior-art.md §1.3: SGD 0.1, batch 128, 40 epochs, Kaiming normal, global 20 % with the
    # output layer excluded. An epoch of our 55,000 training images is 55000 // 128 = 429 steps
    # (``train`` drops the last partial batch); open_lth's 60,000 would give 469 (ceil).
    per_epoch = 55_000 // 128
    assert per_epoch == 429
    for budget, epochs in (("full", 40), ("quick", 10)):
        rec = recipes.get("lenet_mnist_openlth_full", budget=budget)
        assert rec.name == "lenet_mnist_openlth_full"
        assert rec.model == ModelSpec("lenet_300_100", init="kaiming_normal")
        assert rec.data == DataSpec("mnist", "full")
        assert rec.train == TrainConfig(
            steps=epochs * per_epoch, batch_size=128, optimizer="sgd", lr=0.1, eval_every=per_epoch
        )
        assert (rec.train.momentum, rec.train.weight_decay, rec.train.milestones) == (0, 0, ())
        assert rec.prune == PruneSpec(0.2, "global", (("out.weight", 0.0),))
        assert rec.prune.control_draws == 1
    assert recipes.get("lenet_mnist_openlth_full", budget="full").train.steps == 17_160
    assert 40 * -(-60_000 // 128) == 18_760  # open_lth's own count, for comparison


def test_full_presets_differ_from_the_5k_ones_only_where_documented():
    paper, paper_full = (
        recipes.get(n, budget="full") for n in ("lenet_mnist_paper", "lenet_mnist_paper_full")
    )
    assert paper_full.model == paper.model
    assert paper_full.train.replace(steps=paper.train.steps, eval_every=58) == paper.train
    assert dataclasses.replace(paper_full.prune, control_draws=1) == paper.prune
    openlth, openlth_full = (
        recipes.get(n, budget="full") for n in ("lenet_mnist_openlth", "lenet_mnist_openlth_full")
    )
    assert openlth_full.model == openlth.model and openlth_full.prune == openlth.prune
    assert openlth_full.train.replace(steps=1080, eval_every=27) == openlth.train
    keys = {recipes.get(n, budget=b).key for n in recipes.names() for b in ("quick", "full")}
    assert len(keys) == 2 * len(recipes.names())  # every preset and budget has its own folder
