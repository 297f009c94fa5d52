"""`rung merge`, `rung generate`, `rung chat`: a LoRA merged into its base, one answer, a conversation.

Only click and pure-Python rung modules load here; torch and transformers load inside the command bodies."""

from __future__ import annotations

from pathlib import Path

import click

from rung.cli.options import Checked
from rung.core.errors import RungError
from rung.core.inputs import check_model_spec
from rung.core.vocab import MAX_NEW_TOKENS

# ---------------------------------------------------------------------------------------------- merge, chat


@click.command()
@click.argument("adapter_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the merged model (new, empty, or an earlier merge; else --overwrite).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out that rung did not create (files of "
                                                "the same name are replaced).")
@click.option("--trust-remote-code", is_flag=True, help="Allow the base model's own code to run.")
def merge(adapter_dir: Path, out_dir: Path, overwrite: bool, trust_remote_code: bool) -> None:
    """Merge a LoRA adapter into its base model so AutoModelForCausalLM loads it alone."""
    from rung.trainers.merge import merge_adapter

    merge_adapter(adapter_dir, out_dir, trust_remote_code=trust_remote_code, overwrite=overwrite)


def _generation_options(function):
    from rung.cli.options import settings_options  # the endpoint flags probe and gate have, declared once
    from rung.core.settings import EndpointClientSettings

    function = settings_options(EndpointClientSettings, only=("timeout_s", "max_retries", "api_base", "api_key_env"),
                                values=True)(function)
    function = click.option("--trust-remote-code", is_flag=True, help="Allow the model's own code to run.")(function)
    function = click.option("--temperature", type=Checked(float, minimum=0), default=0.0, show_default=True,
                            help="0 = greedy; above 0 samples.")(function)
    function = click.option("--max-new-tokens", type=Checked(int, minimum=1, maximum=MAX_NEW_TOKENS), default=128,
                            show_default=True,
                            help="Most tokens to generate per answer.")(function)
    function = click.option("--system", default=None, help="System prompt.")(function)
    return function


def endpoint_reply(model: str, api_base: str | None, api_key_env: str, max_new_tokens: int, temperature: float,
                   **limits):
    """reply_to(messages) -> text, from an openai:NAME model behind an endpoint (core/endpoint.py); `limits`:
    concurrency, timeout_s, max_retries."""
    from rung.core.generation import open_chat_model

    client = open_chat_model(model, api_base=api_base, api_key_env=api_key_env, **limits)
    return lambda messages: client.chat([messages], max_new_tokens=max_new_tokens, temperature=temperature)[0]


@click.command()
@click.argument("model")
@click.option("--prompt", required=True, help="The user message (the chat template is applied).")
@click.option("--raw", is_flag=True, help="Feed --prompt as plain text, without the chat template.")
@_generation_options
def generate(model: str, prompt: str, raw: bool, system: str | None, max_new_tokens: int, temperature: float,
             trust_remote_code: bool, api_base: str | None, api_key_env: str, **limits) -> None:
    """Answer one prompt with a model folder, an adapter folder, builtin:tiny or openai:NAME at an endpoint."""
    from rung.core.endpoint import is_endpoint

    if is_endpoint(model):
        if raw:
            raise RungError("--raw feeds plain text to a local model; an endpoint takes chat messages")
        from rung.trainers.generate import as_messages

        reply_to = endpoint_reply(model, api_base, api_key_env, max_new_tokens, temperature, **limits)
        click.echo(reply_to(as_messages(prompt, system)))
        return
    check_model_argument(model)
    from rung.trainers.common import quiet_libraries
    from rung.core.models import load_for_inference
    from rung.trainers.generate import generate as run

    quiet_libraries()
    loaded, tokenizer = load_for_inference(model, trust_remote_code=trust_remote_code)
    click.echo(run(loaded, tokenizer, prompt, system=system, max_new_tokens=max_new_tokens,
                   temperature=temperature, raw=raw))


@click.command()
@click.argument("model")
@_generation_options
def chat(model: str, system: str | None, max_new_tokens: int, temperature: float, trust_remote_code: bool,
         api_base: str | None, api_key_env: str, **limits) -> None:
    """Chat interactively with a model folder, an adapter folder, builtin:tiny or openai:NAME at an endpoint."""
    from rung.core.endpoint import is_endpoint
    from rung.trainers.generate import chat_loop, generate as run

    if is_endpoint(model):
        reply_to = endpoint_reply(model, api_base, api_key_env, max_new_tokens, temperature, **limits)
    else:
        check_model_argument(model)
        from rung.core.models import load_for_inference
        from rung.trainers.common import quiet_libraries

        quiet_libraries()
        loaded, tokenizer = load_for_inference(model, trust_remote_code=trust_remote_code)

        def reply_to(messages: list[dict]) -> str:
            return run(loaded, tokenizer, messages, max_new_tokens=max_new_tokens, temperature=temperature)
    chat_loop(reply_to, system=system, read=lambda text: input(text), echo=click.echo)


def check_model_argument(model: str) -> None:
    """MODEL of generate/chat, checked before torch loads: a builtin, a model or adapter folder, a hub id."""
    problem = check_model_spec(model, Path.cwd(), "MODEL")[1]
    if problem:
        raise RungError(problem)


__all__ = ["chat", "generate", "merge"]
