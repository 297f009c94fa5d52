"""Training settings: defaults < plan.yaml < CLI flags; unknown keys fail with a did-you-mean."""

from __future__ import annotations

import pytest

from rung.core.errors import RungError
from rung.core.resolve import resolve
from rung.core.settings import CPTSettings, DPOSettings, SFTSettings


def test_precedence_default_then_plan_then_cli():
    settings = resolve(SFTSettings, [("plan.yaml", {"learning_rate": 1e-4, "max_length": 256}),
                                      ("option", {"learning_rate": 3e-4})])
    assert settings.learning_rate == 3e-4  # CLI wins
    assert settings.max_length == 256  # plan beats default
    assert settings.lora_r == SFTSettings().lora_r  # default stays


def test_unknown_keys_fail_all_at_once_with_did_you_mean():
    with pytest.raises(RungError) as info:
        resolve(SFTSettings, [("plan.yaml: steps[0].settings", {"learnig_rate": 1, "max_seq_length": 2})])
    message = info.value.message
    assert 'unknown setting "learnig_rate" (did you mean "learning_rate"?)' in message
    assert 'unknown setting "max_seq_length" (did you mean "max_length"?)' in message
    assert message.count("\n") == 1


def test_bad_adapter_is_named():
    with pytest.raises(RungError, match='adapter "qlroa"'):
        resolve(DPOSettings, [("plan.yaml", {"adapter": "qlroa"})])


def test_pipelines_have_their_own_defaults():
    assert DPOSettings().beta == 0.1
    assert CPTSettings().adapter == "full"
    assert SFTSettings().adapter == "lora"


def test_every_number_setting_declares_its_range_and_its_default_lies_in_it():
    import dataclasses
    import typing

    from rung.core.resolve import is_integer_hint, range_problem
    from rung.core.settings import SETTINGS_BY_ENGINE

    for cls in SETTINGS_BY_ENGINE.values():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            options = [h for h in (typing.get_args(hints[field.name]) or (hints[field.name],)) if h is not type(None)]
            if options not in ([int], [float]):
                continue
            meta = field.metadata
            assert meta.get("minimum") is not None or meta.get("gt") is not None, (cls.__name__, field.name)
            default = cls().__getattribute__(field.name)
            assert default is None or range_problem(default, meta, is_integer_hint(hints[field.name])) is None, \
                (cls.__name__, field.name, default)


def test_ranges_are_checked_in_the_resolve_all_at_once_naming_the_source():
    with pytest.raises(RungError) as info:
        resolve(SFTSettings, [("plan.yaml: steps[0].settings", {"learning_rate": float("nan"), "lora_r": 0,
                                                                 "eval_fraction": 1.0, "max_steps": 0}),
                              ("option", {"per_device_train_batch_size": -1})])
    assert info.value.message.splitlines() == [
        "plan.yaml: steps[0].settings.learning_rate: must be a finite number above 0, got nan",
        "plan.yaml: steps[0].settings.lora_r: must be an integer at least 1, got 0",
        "plan.yaml: steps[0].settings.eval_fraction: must be a finite number at least 0 and below 1, got 1.0",
        "plan.yaml: steps[0].settings.max_steps: must be an integer at least 1 (or -1), got 0",
        "--batch-size: must be an integer at least 1, got -1",
    ]


def test_zero_epochs_are_legal_with_max_steps_and_eval_fraction_zero_stays_legal():
    settings = resolve(SFTSettings, [("option", {"num_train_epochs": 0, "max_steps": 5, "eval_fraction": 0})])
    assert settings.max_steps == 5 and settings.eval_fraction == 0
    with pytest.raises(RungError, match="epochs and no max_steps would train nothing"):
        resolve(SFTSettings, [("option", {"num_train_epochs": 0})])
