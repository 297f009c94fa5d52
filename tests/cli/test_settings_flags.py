"""One declaration per knob: every field of a command's settings class (core/settings.py) is a flag of that command,
with the field's help, and a plan step's settings resolve to the same object as the same values given as flags.

The values are chosen per field, away from its default and inside its range, so a flag that is missing, renamed,
dropped on the way or parsed differently from the plan's YAML fails here."""

from __future__ import annotations

import dataclasses
import typing
from types import SimpleNamespace

import click
import pytest
import yaml

from rung.cli.main import cli
from rung.cli.options import flag_name, settings_from_flags
from rung.core import settings as S
from rung.core.resolve import resolve, step_settings

# (command path, settings class): every command whose knobs a settings class declares
COMMANDS = [
    (("gate",), S.GateSettings), (("probe",), S.ProbeSettings), (("export",), S.ExportSettings),
    (("serve",), S.ServeSettings), (("rag", "index"), S.RagIndexSettings), (("rag", "query"), S.RetrievalSettings),
    (("rag", "answer"), S.RetrievalSettings), (("rag", "eval"), S.RetrievalSettings), (("run",), S.ClusterSettings),
    (("train", "sft"), S.SFTSettings), (("train", "dpo"), S.DPOSettings), (("train", "grpo"), S.GRPOSettings),
    (("train", "cpt"), S.CPTSettings),
] + [(("train", name), S.ClusterSettings) for name in ("sft", "dpo", "grpo", "cpt")]
TRAINING = {"sft", "dpo", "grpo", "cpt"}


def command(path: tuple[str, ...]) -> tuple[click.Command, click.Context]:
    """The command and its parent's context, built as a real invocation builds them (the group's context settings:
    -h as well as --help; click caches the help option a first context makes)."""
    ctx = click.Context(cli, info_name="rung", **cli.context_settings)
    found: click.Command = cli
    for name in path[:-1]:
        found = found.get_command(ctx, name)
        ctx = click.Context(found, info_name=name, parent=ctx, **found.context_settings)
    return found.get_command(ctx, path[-1]), ctx


def ids(case) -> str:
    return " ".join(case[0]) + ":" + case[1].__name__


@pytest.mark.parametrize("path, cls", COMMANDS, ids=[ids(c) for c in COMMANDS])
def test_every_settings_field_is_a_flag_with_its_help(path, cls):
    params = {p.name: p for p in command(path)[0].params if isinstance(p, click.Option)}
    for field in dataclasses.fields(cls):
        assert field.name in params, f"rung {' '.join(path)} has no flag for {cls.__name__}.{field.name}"
        assert params[field.name].help and params[field.name].help == field.metadata["help"], field.name


def sample(field: dataclasses.Field, hint) -> object:
    """A value for `field` that is not its default and lies inside its declared range."""
    meta, default = field.metadata, field.default
    options = [h for h in (typing.get_args(hint) or (hint,)) if h is not type(None)]
    base = typing.get_origin(options[0]) or options[0]
    if meta.get("choices"):
        return next(c for c in reversed(meta["choices"]) if c != default)
    if bool in options:
        return default is not True
    if base in (int, float):
        low = meta["minimum"] if meta.get("minimum") is not None else (meta["gt"] if meta.get("gt") is not None else 0)
        high = meta["maximum"] if meta.get("maximum") is not None else meta.get("lt")
        value = low + 2 if base is int else (low + (high if high is not None else low + 4)) / 2
        if high is not None and value >= high and base is int:
            value = high
        if value == default:
            value = value - 1 if base is int else value / 2 + low / 2
        return base(value)
    if base is list or list in [typing.get_origin(o) for o in options]:
        return ["first", "second"]
    if base is dict or dict in options:
        return {"key": "value"}
    return "some-value"


def as_args(param: click.Option, value) -> list[str]:
    if param.is_flag and param.secondary_opts:
        return [param.opts[0] if value else param.secondary_opts[0]]
    if param.is_flag:
        return [param.opts[0]] if value else []
    if isinstance(value, (list, dict)):
        return [param.opts[0], yaml.safe_dump(value, default_flow_style=True).strip()]
    return [param.opts[0], str(value)]


@pytest.mark.parametrize("path, cls", COMMANDS, ids=[ids(c) for c in COMMANDS])
def test_a_plan_step_resolves_to_the_settings_the_same_flags_give(path, cls):
    cmd, parent = command(path)
    params = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    hints = typing.get_type_hints(cls)
    values = {f.name: sample(f, hints[f.name]) for f in dataclasses.fields(cls)}
    args = [a for name, value in values.items() for a in as_args(params[name], value)]
    parsed = cmd.make_context(path[-1], args, parent=parent, resilient_parsing=True).params  # the command's own inputs left out
    flags = {name: parsed[name] for name in values}
    if path[0] == "train" and cls is not S.ClusterSettings:
        from rung.cli.train import resolve_training

        from_flags = resolve_training(cls, path[1], None, (), flags)
    else:
        from_flags = settings_from_flags(cls, dict(flags))
    engine = next((name for name, c in S.SETTINGS_BY_ENGINE.items() if c is cls), None)
    if engine:
        ctx = SimpleNamespace(plan={}, outputs={}, cli_settings={})
        from_plan = step_settings(cls, {"id": "step", "engine": engine, "settings": values}, ctx)
    else:
        from_plan = resolve(cls, [("plan.yaml", values)])
    assert from_flags == from_plan == cls(**values)
    assert all(getattr(from_flags, f.name) != f.default for f in dataclasses.fields(cls)
               if f.default is not dataclasses.MISSING), "a sample value equals its default: the test would not see it"


def test_flag_names_come_from_the_field():
    fields = {f.name: f for f in dataclasses.fields(S.SFTSettings)}
    hints = typing.get_type_hints(S.SFTSettings)
    assert flag_name(fields["per_device_train_batch_size"], hints["per_device_train_batch_size"]) == "--batch-size"
    assert flag_name(fields["warmup_ratio"], hints["warmup_ratio"]) == "--warmup-ratio"
    assert flag_name(fields["bf16"], hints["bf16"]) == "--bf16/--no-bf16"
