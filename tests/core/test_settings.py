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
