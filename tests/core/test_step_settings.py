"""Which model and adapter a training step of `rung run` starts from (core/resolve.py step_settings)."""

from __future__ import annotations

from pathlib import Path

from rung.core.protocol import StepContext
from rung.core.resolve import step_settings
from rung.core.settings import CPTSettings, DPOSettings, SFTSettings


def ctx(**kwargs) -> StepContext:
    plan = {"base_model": "org/base", "adapter": "qlora"}
    return StepContext(plan=plan, plan_dir=Path("."), run_dir=Path("."), **kwargs)


def test_base_model_and_plan_adapter_by_default():
    settings = step_settings(SFTSettings, {"id": "sft"}, ctx())
    assert (settings.model_name_or_path, settings.adapter) == ("org/base", "qlora")


def test_from_step_output_beats_the_base_model():
    step = {"id": "dpo", "from_step": "sft"}
    settings = step_settings(DPOSettings, step, ctx(outputs={"sft": {"model_dir": "runs/sft"}}))
    assert settings.model_name_or_path == "runs/sft"


def test_an_explicit_model_beats_from_step_and_the_command_line_beats_all():
    step = {"id": "dpo", "from_step": "sft", "settings": {"model_name_or_path": "local/x", "adapter": "lora"}}
    context = ctx(outputs={"sft": {"model_dir": "runs/sft"}}, cli_settings={"adapter": "full"})
    settings = step_settings(DPOSettings, step, context)
    assert (settings.model_name_or_path, settings.adapter) == ("local/x", "full")


def test_cpt_keeps_its_own_adapter_default(capsys):
    settings = step_settings(CPTSettings, {"id": "cpt"}, ctx(gpus=4))
    assert settings.adapter == CPTSettings().adapter
    assert "Warning" not in capsys.readouterr().err

