from __future__ import annotations

import pytest

from mpqc.autocalib import DEFAULT_EVALUATIONS
from mpqc.recipe import WEIGHTS_KEY, Recipe
from mpqc.workload import Workload


@pytest.fixture(scope="module")
def work(default_model):
    return Workload.build(default_model)


def test_weight_method_auto_takes_the_scales_with_the_better_output(work):
    recipe = work.resolve_recipe((), (4, 8))
    assert set(work.weight_choices) == {4}  # 8-bit weights stay min-max: nothing to choose
    choice = work.weight_choices[4]
    assert set(choice.sqnr_db) == {"minmax", "mse"}
    assert choice.sqnr_db[choice.method] == max(choice.sqnr_db.values())
    assert recipe.weight_method_for(4) == choice.method and recipe.chosen[(WEIGHTS_KEY, 4)] == choice.method
    assert recipe.weight_method_for(8) == "minmax"
    assert any(note.startswith("4-bit weight scales") for note in work.calibration_notes())


def test_activation_ranges_auto_never_end_below_the_best_single_method(work):
    work.resolve_recipe((4,))
    choice = work.choices[4]
    assert choice.sqnr_db >= choice.start_sqnr_db
    assert choice.evaluations <= DEFAULT_EVALUATIONS
    assert work.recipe.method_for("*", 4) in ("minmax", "percentile", "mse")


def test_choices_are_the_same_every_time(default_model, work):
    again = Workload.build(default_model)
    again.resolve_recipe((4,), (4,))
    work.resolve_recipe((4,), (4,))
    assert again.recipe.chosen == work.recipe.chosen


def test_an_explicit_method_is_never_second_guessed(default_model):
    fixed = Workload.build(default_model, recipe=Recipe(activation_method="minmax", weight_method="mse"))
    recipe = fixed.resolve_recipe((4,), (4,))
    assert fixed.choices == {} and fixed.weight_choices == {}
    assert recipe.weight_method_for(4) == "mse" and recipe.method_for("x", 4) == "minmax"
