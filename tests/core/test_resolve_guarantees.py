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
    _, problems = merge(Demo, [("option", {"epochs": 11})])   # no flag in its metadata: the flag of its own name
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


# --------------------------------------------------------------------------------------- types, item by item

def test_a_typed_list_checks_every_item_and_names_the_first_bad_one():
    assert coerce("ids", list[int], [1, 2]) == ([1, 2], None)
    assert coerce("ids", list[int], [1, "a", "b"]) == ([1, "a", "b"], "ids: expected a list of int, got an item 'a'")
    assert coerce("names", list[str], ("a", "b")) == (["a", "b"], None)   # a tuple becomes a list
    assert coerce("anything", list, [1, "a"]) == ([1, "a"], None)         # an untyped list takes any items


def test_a_boolean_is_not_a_number_and_a_number_is_not_a_boolean():
    assert coerce("b", bool, True) == (True, None)
    assert coerce("n", int, True)[1] == "n: expected int, got True"
    assert coerce("b", bool, 1)[1] == "b: expected bool, got 1"


def test_a_mapping_is_only_a_mapping():
    assert coerce("m", dict, {"a": 1}) == ({"a": 1}, None)
    assert coerce("m", dict, "a: 1")[1] == "m: expected dict, got 'a: 1'"
    assert coerce("s", str, {"a": 1})[1] is not None


def test_a_number_written_as_text_becomes_a_float_only_where_a_float_is_wanted():
    assert coerce("lr", float, "2e-4") == (0.0002, None)        # YAML 1.1 reads 2e-4 as a string
    assert coerce("lr", float | None, "1e-3") == (0.001, None)
    assert coerce("steps", int, "3")[1] == "steps: expected int, got '3'"
    assert coerce("lr", float, "fast")[1] == "lr: expected float, got 'fast'"


def test_a_union_names_every_type_it_takes():
    assert coerce("x", int | str, [1])[1] == "x: expected int or str, got [1]"


# --------------------------------------------------------------------------------------- names and plan layers

def test_an_option_without_a_flag_of_its_own_is_named_by_its_field_with_dashes():
    from rung.core.resolve import value_name

    @dataclasses.dataclass
    class WithUnderscore:
        max_new_tokens: int = setting(8, "tokens", minimum=1)

    field = dataclasses.fields(WithUnderscore)[0]
    assert value_name("option", "max_new_tokens", field) == "--max-new-tokens"
    assert value_name("--set", "max_new_tokens", field) == "--set max_new_tokens"
    assert value_name("plan.yaml: steps[0].settings", "max_new_tokens", field) == \
        "plan.yaml: steps[0].settings.max_new_tokens"


def test_the_plans_base_model_and_adapter_are_layers_only_where_they_apply():
    from rung.core.resolve import plan_layers

    plan = {"base_model": "m", "adapter": "qlora"}
    assert plan_layers("sft", plan, {}, "plan") == [("plan: base_model", {"model_name_or_path": "m"}),
                                                     ("plan: adapter", {"adapter": "qlora"})]
    assert plan_layers("sft", plan, {"from_step": "earlier"}, "plan") == [("plan: adapter", {"adapter": "qlora"})]
    assert plan_layers("cpt", plan, {}, "plan") == [("plan: base_model", {"model_name_or_path": "m"})]
    assert plan_layers("gate", plan, {}, "plan") == []
    assert plan_layers("sft", {}, {}, "plan") == []


def ctx(plan: dict, outputs: dict | None = None, cli: dict | None = None):
    from pathlib import Path

    from rung.core.protocol import StepContext

    return StepContext(plan=plan, plan_dir=Path("."), run_dir=Path("."), outputs=outputs or {}, cli_settings=cli or {})


def test_a_step_from_another_step_trains_that_steps_model_even_when_its_setting_is_empty():
    from rung.core.resolve import step_settings
    from rung.core.settings import SFTSettings

    step = {"id": "s2", "engine": "sft", "from_step": "s1", "settings": {"model_name_or_path": None}}
    settings = step_settings(SFTSettings, step, ctx({"base_model": "base"}, {"s1": {"model_dir": "/runs/s1/model"}}))
    assert settings.model_name_or_path == "/runs/s1/model"
    plain = step_settings(SFTSettings, {"id": "s1", "engine": "sft"}, ctx({"base_model": "base"}))
    assert plain.model_name_or_path == "base"
    named = step_settings(SFTSettings, {"id": "s2", "engine": "sft", "from_step": "s1",
                                        "settings": {"model_name_or_path": "mine"}},
                          ctx({"base_model": "base"}, {"s1": {"model_dir": "/runs/s1/model"}}))
    assert named.model_name_or_path == "mine"


def test_a_steps_problems_name_the_plan_the_step_and_the_set_flag():
    from rung.core.resolve import step_settings
    from rung.core.settings import SFTSettings

    with pytest.raises(RungError) as error:
        step_settings(SFTSettings, {"id": "s1", "engine": "sft", "settings": {"learning_rate": -1.0}},
                      ctx({"base_model": 5}, cli={"lora_r": 0}))
    text = str(error.value)
    assert "plan: base_model.model_name_or_path: expected str, got 5" in text
    assert "steps.s1.settings.learning_rate: must be" in text
    assert "--set s1.lora_r: must be" in text


# --------------------------------------------------------------------------------------- ranges at their edges

def test_range_edges():
    from rung.core.resolve import INT_LIMIT, range_problem

    assert range_problem(float("inf"), {}, False) == "must be a finite number, got inf"
    assert range_problem(float("nan"), {"gt": 0}, False) is not None
    assert range_problem(10, {"maximum": 10}, True) is None and range_problem(11, {"maximum": 10}, True) is not None
    assert range_problem(INT_LIMIT, {}, True) is None
    assert range_problem(INT_LIMIT + 1, {}, True) == f"must be an integer at most {INT_LIMIT:,}, got {INT_LIMIT + 1}"
    assert range_problem(-INT_LIMIT - 1, {}, True) is not None
    assert range_problem(2**32, {"maximum": 2**40}, True) is None       # its own maximum replaces the int limit
    assert range_problem(INT_LIMIT, {"minimum": 2**31}, True) == \
        f"must be an integer at least {2**31:,}, got {INT_LIMIT}"       # in the int range: no ceiling in the words


@dataclasses.dataclass
class Training:
    num_train_epochs: float = setting(0.0, "epochs")
    max_steps: int = setting(-1, "steps")
    mode: str = setting("medium", "mode", choices=("fast", "slow"))


def test_zero_epochs_without_max_steps_is_named_by_where_the_epochs_came_from():
    _, problems = merge(Training, [("--set", {"mode": "fast"})])
    assert problems[-1] == ("num_train_epochs: 0.0 epochs and no max_steps would train nothing: give epochs above "
                            "0, or max_steps")
    _, problems = merge(Training, [("--set", {"num_train_epochs": 0, "mode": "fast"})])
    assert problems == ["--set num_train_epochs: 0.0 epochs and no max_steps would train nothing: give epochs "
                        "above 0, or max_steps"]
    assert merge(Training, [("--set", {"num_train_epochs": 0, "max_steps": 5, "mode": "fast"})])[1] == []


def test_a_bad_choice_is_named_by_its_flag_its_layer_or_the_defaults():
    _, problems = merge(Training, [("--set", {"num_train_epochs": 1})])
    assert problems == ['settings: mode "medium" is not one of fast, slow']
    _, problems = merge(Training, [("option", {"num_train_epochs": 1, "mode": "fsat"})])
    assert problems == ['--mode "fsat" is not one of fast, slow (did you mean "fast"?)']
    _, problems = merge(Training, [("plan.yaml", {"num_train_epochs": 1, "mode": "slwo"})])
    assert problems == ['plan.yaml: mode "slwo" is not one of fast, slow (did you mean "slow"?)']


def test_an_optional_int_is_an_integer_hint():
    from rung.core.resolve import is_integer_hint

    assert is_integer_hint(int) and is_integer_hint(int | None) and not is_integer_hint(float | None)
    assert not is_integer_hint(int | str) and not is_integer_hint(type(None))


def test_a_command_line_value_is_read_as_yaml():
    from rung.core.resolve import parse_value

    assert parse_value("2e-4") == "2e-4"   # YAML 1.1 reads it as text; coerce() makes a float of it where one is wanted
    assert parse_value("true") is True and parse_value("[a, b]") == ["a", "b"] and parse_value("3") == 3
    assert parse_value("") is None and parse_value("   ") is None
    assert parse_value("[unclosed") == "[unclosed"                       # not YAML: the text itself
    assert parse_value("a*b") == "a*b" and parse_value("&x [1] ") == [1]


def test_yaml_aliases_that_expand_past_the_budget_are_refused():
    from rung.core.fileio import MAX_YAML_VALUES
    from rung.core.resolve import parse_value

    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
           "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" \
           "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]"
    with pytest.raises(RungError) as error:
        parse_value(bomb)
    assert error.value.message.endswith(f": YAML aliases expand to more than {MAX_YAML_VALUES:,} values; refusing it")
    assert error.value.message.startswith("'a: &a [x, x")
    small = "a: &a [1, 2]\nb: [*a, *a]"
    assert parse_value(small) == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_exactly_the_alias_budget_is_allowed():
    from rung.core.fileio import MAX_YAML_VALUES, count_values
    from rung.core.resolve import parse_value

    # {a: [0 x 1001], b: [a x 997]}: 1 mapping + 2 keys + (1 + 1001) + (1 + 997 x 1002) = 1,000,000 values
    text = "a: &a [" + ", ".join(["0"] * 1001) + "]\nb: [" + ", ".join(["*a"] * 997) + "]"
    value = parse_value(text)
    assert count_values(value, MAX_YAML_VALUES) == MAX_YAML_VALUES == 1_000_000
