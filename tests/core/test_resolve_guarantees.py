"""Settings resolution, stated as guarantees (written against survivors of `make mutate` in core/resolve.py):
later layers win even after an empty one, a wrong type is refused and named, every problem names where the
value came from (the flag typed, `--set key`, `file.key`), and a range is said in words."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from rung.core.errors import RungError
from rung.core.resolve import coerce, merge, range_text, resolve
from rung.core.settings import setting


@dataclasses.dataclass
class Demo:
    learning_rate: float = setting(1e-4, "lr", flag="--lr/--learning-rate", gt=0)
    epochs: int = setting(1, "epochs", minimum=1, maximum=10)
    name: str | None = setting(None, "a name")
    mode: str = setting("fast", "mode", choices=("fast", "slow"))
    extra: Any = setting(None, "anything")


def test_an_empty_layer_does_not_stop_the_layers_after_it():
    values, problems = merge(Demo, [("plan", None), ("plan.yaml: settings", {}), ("--set", {"epochs": 3})])
    assert problems == [] and values["epochs"] == 3


def test_later_layers_override_earlier_ones():
    built = resolve(Demo, [("plan.yaml: settings", {"epochs": 2, "mode": "slow"}), ("--set", {"epochs": 5})])
    assert (built.epochs, built.mode) == (5, "slow")


def test_a_value_of_the_wrong_type_is_refused_with_the_types_wanted():
    value, problem = coerce("--set epochs", int, "three")
    assert problem == "--set epochs: expected int, got 'three'"
    _, problem = coerce("x", int | None, [1])
    assert problem == "x: expected int, got [1]"


def test_any_accepts_anything_but_a_typed_union_does_not():
    assert coerce("extra", Any, {"a": 1}) == ({"a": 1}, None)
    assert coerce("name", str | None, 3)[1] == "name: expected str, got 3"
    assert coerce("name", str | None, None) == (None, None)
    assert coerce("epochs", int, None)[1] == "epochs: must not be empty"


def test_problems_name_the_flag_the_set_key_or_the_file_key():
    _, problems = merge(Demo, [("option", {"learning_rate": -1.0})])
    assert problems == ["--lr: must be a finite number above 0, got -1.0"]
    _, problems = merge(Demo, [("--set", {"epochs": 0})])
    assert problems == ["--set epochs: must be an integer at least 1 and at most 10, got 0"]
    _, problems = merge(Demo, [("plan.yaml: steps[0].settings", {"epochs": "x"})])
    assert problems == ["plan.yaml: steps[0].settings.epochs: expected int, got 'x'"]
    _, problems = merge(Demo, [("option", {"epochs": 11})])   # a field without a flag of its own: --its-name
    assert problems == ["--epochs: must be an integer at least 1 and at most 10, got 11"]


def test_an_unknown_key_is_named_with_its_layer():
    _, problems = merge(Demo, [("plan.yaml: settings", {"epoch": 2})])
    assert len(problems) == 1 and problems[0].startswith('plan.yaml: settings: unknown setting "epoch"')


def test_a_choice_outside_the_list_names_the_layer_it_came_from():
    _, problems = merge(Demo, [("--set", {"mode": "medium"})])
    assert len(problems) == 1 and problems[0].startswith('--set: mode "medium" is not one of fast, slow')


def test_ranges_in_words():
    assert range_text({"maximum": 10}, True) == "an integer at most 10"
    assert range_text({"minimum": 1000}, True) == "an integer at least 1,000"
    assert range_text({"gt": 0.5}, False) == "a finite number above 0.5"
    assert range_text({}, False) == "a finite number"
    assert range_text({}, True, ceiling=True) == "an integer at most 2,147,483,647"
    assert range_text({"maximum": 5}, True, ceiling=True) == "an integer at most 5"
    assert range_text({"minimum": 1, "also": (-1,)}, True) == "an integer at least 1 (or -1)"


def test_every_problem_is_reported_at_once():
    with pytest.raises(RungError) as caught:
        resolve(Demo, [("--set", {"epochs": 0, "learning_rate": 0.0, "mode": "x"})])
    text = str(caught.value)
    assert "epochs" in text and "--set learning_rate" in text and '"x" is not one of' in text
