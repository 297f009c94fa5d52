"""`rung ask`: the questionnaire. One question at a time, choices with one-line help, defaults shown, bad input
re-asked with the reason. Works in a terminal and with piped stdin (when the input ends early, the remaining
questions take their defaults). Ends with the recommendation and saves the answers file.

Each question's `when` sees the answers so far: the earlier questions' answers, or their defaults where they were
skipped; later questions are not known yet. GPUs, budget and the base model are asked only when the route rules
can still pick a training route for those answers (rules.could_pick), and whether a program can score the answers
only when a route rule that tests it can still fire (rules.could_turn_on): the rule book decides it.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from rung.advisor.answers import GOALS, KNOWLEDGE_CHANGES, PROMPTING_RESULTS, SCHEMA, coerce, explicit_answers, validate_answers
from rung.core.errors import RungError

BEHAVIOUR_GOALS = ("style", "schema", "domain_task")


def may_train(a: dict[str, Any]) -> bool:
    """Could the answers so far end on a training route? Only then do GPUs, budget and the base model matter.

    Asked of the route rules themselves, with the rule book's thresholds: facts not in `a` are not known yet.
    """
    from rung.advisor.rulebook import load_rulebook
    from rung.advisor.rules import answer_facts, could_pick
    from rung.core.vocab import TRAINING_ROUTES

    return could_pick(load_rulebook(), answer_facts(a), TRAINING_ROUTES)


def may_decide(key: str) -> Callable[[dict[str, Any]], bool]:
    """A question's `when`: ask for `key` only if a route rule that tests it can still fire (rules.could_turn_on)."""
    def when(a: dict[str, Any]) -> bool:
        from rung.advisor.rulebook import load_rulebook
        from rung.advisor.rules import answer_facts, could_turn_on

        return could_turn_on(load_rulebook(), answer_facts(a), key)

    return when


def _size_unknown(a: dict[str, Any]) -> bool:
    from rung.advisor.estimator import model_shape

    if not may_train(a):
        return False
    return model_shape(a.get("base_model")).source == "default"


# (key, question, when to ask). Choices and help come from advisor/answers.py.
QUESTIONS: list[tuple[str, str, Callable[[dict[str, Any]], bool]]] = [
    ("goal", "What do you want the model to do better?", lambda a: True),
    ("prompting_result", "How does your best prompt do today?",
     lambda a: a["goal"] in (*BEHAVIOUR_GOALS, "shorten_prompt", "preferences")),
    ("knowledge_changes", "How often do those facts change?", lambda a: a["goal"] == "facts"),
    ("private_data", "Are the facts private (not on the public web)?", lambda a: a["goal"] == "facts"),
    ("domain_corpus_tokens", "How much unlabelled domain text do you have, in tokens? (1M words ~ 1.3M tokens)",
     lambda a: a["goal"] == "domain_language"),
    ("automatic_checker", "Can a program score an answer (a test, a schema, an exact reference to compare with)?",
     may_decide("automatic_checker")),
    ("labeled_examples", "How many labelled (input, ideal output) examples do you have?",
     lambda a: a["goal"] in ("preferences", "domain_language")
     or (a["goal"] in BEHAVIOUR_GOALS and a.get("prompting_result") == "inconsistent")),
    ("preference_pairs", "How many preference pairs (a prompt with a chosen and a rejected answer) do you have?",
     lambda a: a["goal"] == "preferences"
     or (a["goal"] in BEHAVIOUR_GOALS and a.get("prompting_result") == "inconsistent")),
    ("prompt_tokens", "How long is the prompt you send today, in tokens?", lambda a: a["goal"] == "shorten_prompt"),
    ("requests_per_day", "How many requests a day send it?", lambda a: a["goal"] == "shorten_prompt"),
    ("gpu_memory_gb", "How much memory does each of your GPUs have, in GB? (0 = no GPU)", may_train),
    ("gpu_count", "How many GPUs can you use?", lambda a: may_train(a) and a.get("gpu_memory_gb", 0) > 0),
    ("budget_usd", "Budget cap in dollars for the recommended route? (empty = no cap)", may_train),
    ("base_model", "Base model to adapt (hub id or local path; empty = decide later)?", may_train),
    ("base_model_params_b", "Its size in billions of parameters?", _size_unknown),
    ("keep_general_skills", "Should the model keep its general skills (worried about forgetting)?", may_train),
]
CHOICES = {"goal": GOALS, "prompting_result": PROMPTING_RESULTS, "knowledge_changes": KNOWLEDGE_CHANGES}
DEFAULT_SHOWN = {"base_model_params_b": "7", "gpu_count": "1", "budget_usd": "none", "base_model": "none"}


def _parse(key: str, text: str) -> Any:
    """Turn typed text into a value for `key`; raises click.UsageError with the reason (click re-asks)."""
    kind, detail, default = SCHEMA[key]
    text = text.strip()
    if kind == "enum":
        choices = list(detail)
        if text.isdigit() and 1 <= int(text) <= len(choices):
            return choices[int(text) - 1]
        lowered = text.lower().replace(" ", "_").replace("-", "_")
        if lowered in choices:
            return lowered
        starts = [c for c in choices if c.startswith(lowered)] if lowered else []
        if len(starts) == 1:
            return starts[0]
        raise click.UsageError(f'"{text}" is not a choice: type a number 1-{len(choices)} or a name '
                               f'({", ".join(choices)})')
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("y", "yes", "true", "1"):
            return True
        if lowered in ("n", "no", "false", "0"):
            return False
        raise click.UsageError(f'"{text}" is not yes or no: type y or n')
    if text.lower() in ("", "none", "null", "-"):
        if key in ("base_model", "budget_usd", "base_model_params_b"):
            return None
        if text == "":
            return default
    value, problem = coerce(key, text)
    if problem:
        problem = problem.replace(" or null,", ", or empty for none,")
        raise click.UsageError(f"{problem} (examples: 0, 2000, 50M, 1.5B)" if kind != "text" else problem)
    return value


def _default_text(key: str) -> str:
    if key in DEFAULT_SHOWN:
        return DEFAULT_SHOWN[key]
    default = SCHEMA[key][2]
    if isinstance(default, bool):
        return "yes" if default else "no"
    return "" if default is None else str(default)


def _ask(key: str, question: str, counter: str) -> Any:
    click.echo(f"\n[{counter}] {question}")
    kind = SCHEMA[key][0]
    if key in CHOICES:
        width = max(len(c) for c in CHOICES[key])
        for index, (choice, help_text) in enumerate(CHOICES[key].items(), start=1):
            click.echo(f"  {index}) {choice:<{width}}  {help_text}")
    default = _default_text(key)
    if key == "goal":
        prompt = f"Choose 1-{len(GOALS)} or a name"
    elif key in CHOICES:
        prompt = f"Choose 1-{len(CHOICES[key])} or a name [{default}]"
    elif kind == "bool":
        prompt = f"y/n [{default}]"
    else:
        prompt = f"Answer [{default}]" if default else "Answer"
    return click.prompt(prompt, default=default if key != "goal" else None, show_default=False,
                        value_proc=lambda text: _parse(key, text), prompt_suffix=": ")


# Given the answers, maybe measure the prompt on held-out rows and return the evidence (or None). The CLI
# passes one that offers `rung probe` (cli/ask.py): the advisor itself never loads a model.
Measure = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def run_questionnaire(out: str, measure: Measure | None = None) -> dict[str, Any]:
    """Ask, (measure,) advise, save. Returns the answers saved."""
    from rung.advisor.render import render_advice
    from rung.core.fileio import atomic_write_yaml
    from rung.advisor.rules import advise

    click.echo("rung ask: a few questions to pick the rung of the LLM ladder that solves your problem.")
    click.echo("Press Enter to take the [default]. Ctrl-C stops without saving.")
    collected: dict[str, Any] = {}
    so_far: dict[str, Any] = {}  # every earlier question's answer, or its default when it was skipped
    input_ended = False
    for index, (key, question, when) in enumerate(QUESTIONS):
        if (not index or when(so_far)) and not input_ended:
            try:
                collected[key] = _ask(key, question, str(len(collected) + 1))
            except click.Abort:
                if sys.stdin.isatty():
                    raise
                if key == "goal":
                    raise RungError("the input ended before the goal was given; nothing saved") from None
                input_ended = True
                click.echo("\n(input ended: the remaining questions take their defaults)")
        so_far[key] = collected.get(key, SCHEMA[key][2])
    answers, problems = validate_answers(dict(collected), where="your answers")
    if problems:  # cannot happen: every value went through the same checks
        raise RungError(problems)
    evidence = measure(answers) if measure is not None and not input_ended else None
    result = advise(answers, evidence=evidence)
    click.echo("\n" + "-" * 60)
    click.echo(render_advice(result, out))
    atomic_write_yaml(out, explicit_answers(answers) | {k: v for k, v in collected.items()})
    click.echo(f"\nSaved your answers to {out}.")
    return answers
