"""Spaces valid for the run (issue 25): a knob value that no trial of this run could use is left
out of a sweep's space before the first trial, and refused where it is fixed (a space, an
enqueued point, `prune --set`); `--epochs N` keeps a short run's regularisation as strong in all
as the full recipe's, or says plainly that it will not prune."""

from __future__ import annotations

import pytest
from cli_helpers import SYNTHETIC_RUN, assert_one_error_line, run_cli_many

from sparsetune.app.checks import DenseStage, check_params_fit, narrowed_space
from sparsetune.app.errors import BadInput
from sparsetune.app.options import PruneOptions
from sparsetune.app.prune import trial_config
from sparsetune.config import TrainConfig
from sparsetune.pruning.l0 import L0Config, L0Regularization
from sparsetune.search.enqueue import PAPER_POINTS, auto_points, load_points
from sparsetune.search.space import SearchSpace, default_space_path, load_space
from sparsetune.search.state import space_digest
from sparsetune.train.dense_cache import dense_steps, rewind_points

ONE_EPOCH = TrainConfig(epochs=1, batch_size=128)


def test_the_dense_stage_has_the_rewind_points_its_steps_reach():
    assert dense_steps(300, 128, 1) == 3  # the last, smaller batch is a step too
    assert dense_steps(13_000, 128, 2) == 204
    assert rewind_points(3) == (0,)
    assert rewind_points(204) == (0, 100, 200)
    assert rewind_points(None) == (0,)  # --weights: no training, theta_0 only
    assert DenseStage.of(ONE_EPOCH, 300).steps == 3


def test_the_default_space_is_narrowed_to_the_checkpoints_a_short_dense_stage_has():
    space = load_space(default_space_path("lenet300"))
    narrowed, note = narrowed_space(space, DenseStage.of(ONE_EPOCH, 300))
    assert narrowed.methods["lottery"]["rewind_iteration"].value == 0
    assert note == (
        "space: lottery.rewind_iteration 100, 500 left out: the dense stage trains 1 epoch x 3 "
        "batches of 128 (300 training examples): 3 steps, so theta_j exists for j = 0 only "
        "(rewind_iteration 500 needs --epochs 167 or more)"
    )
    others = {name: params for name, params in space.methods.items() if name != "lottery"}
    assert {name: narrowed.methods[name] for name in others} == others
    # Between two rewind points: the choices the dense stage reaches stay choices.
    middle, _ = narrowed_space(space, DenseStage.of(ONE_EPOCH, 13_000))
    assert middle.methods["lottery"]["rewind_iteration"].choices == [0, 100]
    # Long enough for every choice: nothing to say, the same space (and sweep identity).
    same, note = narrowed_space(
        space, DenseStage.of(ONE_EPOCH.model_copy(update={"epochs": 5}), 13_000)
    )
    assert note is None and space_digest(same) == space_digest(space)


def test_the_default_start_leaves_out_a_paper_point_that_a_short_run_cannot_give():
    """`--enqueue auto` (the default) never refuses a run: the CIFAR lottery point rewinds to
    iteration 500, which a 3-step dense stage lacks; `--enqueue paper` names it as bad input."""
    narrowed, _ = narrowed_space(
        load_space(default_space_path("resnet20")), DenseStage.of(ONE_EPOCH, 300)
    )
    with pytest.raises(ValueError, match="lottery.rewind_iteration is fixed at 0 in this space"):
        load_points(PAPER_POINTS, narrowed, "resnet20")
    loaded = auto_points(narrowed, "resnet20", trials=100)
    assert [point["method"] for point in loaded.points] == [
        "dense", "magnitude", "snip", "grasp", "random",
    ]  # fmt: skip
    assert any(why.startswith("lottery (lottery.rewind_iteration") for why in loaded.skipped)


def test_the_same_run_narrows_the_same_way():
    """A resumed sweep narrows its space again: the digest its identity holds is unchanged."""
    space = load_space(default_space_path("lenet300"))
    first, _ = narrowed_space(space, DenseStage.of(ONE_EPOCH, 300))
    again, _ = narrowed_space(space, DenseStage.of(ONE_EPOCH, 300))
    assert space_digest(first) == space_digest(again) != space_digest(space)


def test_a_range_becomes_the_rewind_points_inside_it():
    space = SearchSpace(methods={"lottery": {"rewind_iteration": {"low": 0, "high": 2000}}})
    narrowed, note = narrowed_space(space, DenseStage.of(ONE_EPOCH, 13_000))
    assert narrowed.methods["lottery"]["rewind_iteration"].choices == [0, 100]
    assert "rewind_iteration 2000 left out" in note


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (500, "the space fixes lottery's rewind_iteration at 500"),
        ({"choices": [500, 1000]}, "the space gives lottery's rewind_iteration 500, 1000"),
    ],
)
def test_a_space_that_leaves_no_rewind_point_is_refused(spec, words):
    space = SearchSpace(methods={"lottery": {"rewind_iteration": spec}})
    with pytest.raises(BadInput, match=words) as refused:
        narrowed_space(space, DenseStage.of(ONE_EPOCH, 300))
    assert "3 steps" in str(refused.value) and "\n" not in str(refused.value)


def test_a_fixed_parameter_the_run_cannot_give_is_refused():
    dense = DenseStage.of(ONE_EPOCH, 300)
    check_params_fit("", "lottery", {"rewind_iteration": 0, "rounds": 2}, dense)
    with pytest.raises(BadInput, match="lottery rewind_iteration 100: the dense stage trains"):
        check_params_fit("", "lottery", {"rewind_iteration": 100}, dense)


def test_refusals_on_the_command_line_write_nothing(tmp_path):
    (tmp_path / "fixed.yaml").write_text(
        "train: {epochs: 1, batch_size: 128}\nmethods:\n  lottery: {rewind_iteration: 500}\n"
    )
    (tmp_path / "late.yaml").write_text("- {method: lottery, params: {rewind_iteration: 500}}\n")
    short = [*SYNTHETIC_RUN, "--subset", "300", "--epochs", "1", "--cache-dir", "cache"]
    calls = {
        "prune --set": ["prune", *short, "--method", "lottery", "--set", "rewind_iteration=500"],
        "search --space": ["search", *short, "--space", str(tmp_path / "fixed.yaml")],
        "search --enqueue": ["search", *short, "--enqueue", str(tmp_path / "late.yaml")],
    }
    results = run_cli_many(
        {
            name: {"args": [*args, "--out", name.replace(" ", "")], "cwd": tmp_path}
            for name, args in calls.items()
        }
    )
    words = {
        "prune --set": ["lottery rewind_iteration 500", "5 batches of 60", "pick one of 0"],
        "search --space": ["fixes lottery's rewind_iteration at 500", "3 steps"],
        "search --enqueue": ["point 1: lottery rewind_iteration 500", "pick one of 0"],
    }
    for name, result in results.items():
        assert_one_error_line(result, words[name])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fixed.yaml", "late.yaml"]


def test_a_quick_run_raises_the_per_step_rates_as_its_phases_shorten():
    full, _ = trial_config(PruneOptions(model="lenet300", method="l0"))
    quick, recipe = trial_config(PruneOptions(model="lenet300", method="l0", epochs=2))
    full_l0, quick_l0 = full.method_config(), quick.method_config()
    assert quick_l0.epochs == 37  # ceil(200 x 2 / 11)
    assert quick_l0.gate_lr_factor == pytest.approx(full_l0.gate_lr_factor * 200 / 37)
    assert recipe.notes == ()
    sensitivity, _ = trial_config(PruneOptions(model="lenet300", method="sensitivity", epochs=2))
    assert sensitivity.method_config().lmbda == pytest.approx(5e-4 * 100 / 19)
    # --set wins: a length set there is the one the rate follows, a rate set there stays.
    longer, _ = trial_config(
        PruneOptions(model="lenet300", method="l0", epochs=2, params={"epochs": 100})
    )
    assert longer.method_config().gate_lr_factor == pytest.approx(2.0)
    fixed, _ = trial_config(
        PruneOptions(model="lenet300", method="l0", epochs=2, params={"gate_lr_factor": 3.0})
    )
    assert fixed.method_config().gate_lr_factor == 3.0


def test_a_rate_past_its_limit_stays_at_it_and_says_so():
    from sparsetune.app.prune import _quick_recipe
    from sparsetune.recipe import MethodRecipe

    full = MethodRecipe(TrainConfig(epochs=100), {"lmbda": 0.5, "epochs": 100}, "a test")
    options = PruneOptions(model="lenet300", method="sensitivity", epochs=1)
    quick = _quick_recipe(full, options)
    assert quick.params["lmbda"] == 1.0  # 0.5 x 100 would be 50; the Config allows at most 1
    (note,) = quick.notes
    assert note == (
        "sensitivity at --epochs 1: lmbda would have to be 50 to regularise as much as the full "
        "recipe, above its limit 1; it prunes less than the full recipe at this length "
        "(--epochs 50 or more does not)"
    )


def test_l0_says_when_its_gates_cannot_close_in_the_run():
    short = L0Regularization(L0Config(epochs=3, lr=1e-3, batch_size=100, gate_lr_factor=1.0))
    note = short.length_note(train_size=1000)
    assert note is not None and note.startswith("l0 will not prune in this run: 3 epochs x 10")
    assert "gates can close only with --set gate_lr_factor=80 or more" in note
    enough = L0Regularization(L0Config(epochs=3, lr=1e-3, batch_size=100, gate_lr_factor=100.0))
    assert enough.length_note(train_size=1000) is None
