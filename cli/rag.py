"""`rung rag index | query | answer | eval | info`. Only click at import time: heavy imports live in the commands."""

from __future__ import annotations

import json

import click

from rung.cli.options import settings_from_flags, settings_options
from rung.core.settings import RagIndexSettings, RetrievalSettings

INDEX_HELP = ("Index made by `rung rag index`: a folder, or postgresql://USER@HOST:PORT/DB?table=NAME "
              "(password from PGPASSWORD or ~/.pgpass, never in the URL).")


def _finite(value):
    """NaN and infinities become null: JSON has no such numbers, and a reader must not get them as text."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(value, **options) -> str:
    return json.dumps(_finite(value), allow_nan=False, **options)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def rag() -> None:
    """Build and query a retrieval index: a folder (FAISS, no pickle) or PostgreSQL + pgvector."""


@rag.command("index")
@click.argument("sources", nargs=-1, type=click.Path(path_type=str))
@settings_options(RagIndexSettings, required=("index",))
@click.option("--rebuild", is_flag=True, help="Start over: drop the existing vectors (needed to change the model, "
              "or to replace a damaged index).")
@click.option("--progress/--no-progress", default=None, help="Show a chunks/s progress bar [default: on a terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def index_cmd(sources, rebuild, progress, as_json, **flags):
    """Index files and folders (.txt .md .rst .html .pdf .jsonl); re-runs embed only what changed.

    The index mirrors SOURCES: files gone from them are removed. Without SOURCES, the sources recorded in the
    index are synced again.
    """
    import sys

    from rung.rag.ingest import ingest

    given = {name: value for name, value in flags.items() if value is not None}  # unset: the index keeps its own
    settings = settings_from_flags(RagIndexSettings, flags)
    show = sys.stderr.isatty() if progress is None else progress
    summary = ingest(list(sources) or None, settings.index, model=given.get("model"),
                     chunk_tokens=given.get("chunk_tokens"), overlap=given.get("overlap"),
                     index_type=given.get("index_type"), rebuild=rebuild, follow_symlinks=settings.follow_symlinks,
                     batch_size=settings.batch_size, progress=show, log=lambda m: click.echo(m, err=True))
    for note in summary.bad_line_notes():
        click.echo(f"warning: {note}", err=True)
    if as_json:
        click.echo(to_json(summary.as_dict(), indent=2))
        return
    for source, reason in summary.skipped_files[:20]:
        click.echo(f"skipped {source}: {reason}", err=True)
    if len(summary.skipped_files) > 20:
        click.echo(f"... and {len(summary.skipped_files) - 20} more skipped", err=True)
    click.echo(summary.line())


@rag.command("query")
@click.argument("question")
@click.option("--index", "index_dir", required=True, type=click.Path(path_type=str), help=INDEX_HELP)
@click.option("-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True, help="How many chunks.")
@click.option("--model", default=None, help="Embedding model; must be the one the index was built with [default: that one].")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as a JSON list.")
@click.option("--width", type=int, default=240, show_default=True, help="Characters of each chunk to show (0 = all).")
@settings_options(RetrievalSettings)
def query_cmd(question, index_dir, k, model, as_json, width, **retrieval):
    """Show the chunks closest to QUESTION with score (cosine; hybrid: fused), source path and line."""
    from rung.core.errors import RungError
    from rung.rag.backend import check_location, load_index

    if width < 0:
        raise RungError(f"--width must be 0 (all) or more (got {width})")
    settings = settings_from_flags(RetrievalSettings, retrieval)
    check_location(index_dir)
    loaded = load_index(index_dir, model=model, retrieval=settings)
    if not len(loaded):
        raise RungError(f"{index_dir} holds no chunks (every file was skipped?); see `rung rag info --index {index_dir}`")
    hits = loaded.search(question, k)
    if as_json:
        click.echo(to_json([h.as_dict() for h in hits], indent=2, ensure_ascii=False))
        return
    for hit in hits:
        heading = f"  § {hit.chunk['heading']}" if hit.chunk.get("heading") else ""
        click.echo(f"{hit.rank}. {hit.score:.3f}  {hit.where}{heading}")
        text = " ".join(hit.chunk["text"].split())
        click.echo("   " + (text if not width or len(text) <= width else text[:width] + " …"))


@rag.command("answer")
@click.argument("question")
@click.option("--index", "index_dir", required=True, type=click.Path(path_type=str), help=INDEX_HELP)
@click.option("--model", default="builtin:tiny", show_default=True,
              help="Causal LM that writes the answer: hub id, local path, builtin:tiny (a toy), or openai:NAME at an "
                   "OpenAI-compatible endpoint.")
@click.option("-k", "k", type=click.IntRange(1, 50), default=4, show_default=True, help="How many chunks to give it.")
@click.option("--max-new-tokens", type=int, default=128, show_default=True, help="Longest answer, in tokens (1 or more).")
@click.option("--temperature", type=float, default=0.0, show_default=True,
              help="0 = greedy (the same answer every time); above 0 samples.")
@click.option("--top-p", type=float, default=1.0, show_default=True,
              help="When sampling, draw from the smallest set of tokens whose probability adds up to this (0 < p <= 1).")
@click.option("--trust-remote-code", is_flag=True, help="Allow the model's own Python code (off by default).")
@click.option("--api-base", default=None, metavar="URL",
              help="For --model openai:NAME: the OpenAI-compatible endpoint's base URL (default: $OPENAI_BASE_URL).")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, metavar="VAR",
              help="For --model openai:NAME: the environment variable holding the API key.")
@click.option("--json", "as_json", is_flag=True, help="Print answer and sources as JSON.")
@settings_options(RetrievalSettings)
def answer_cmd(question, index_dir, model, k, max_new_tokens, temperature, top_p, trust_remote_code, api_base,
               api_key_env, as_json, **retrieval):
    """Answer QUESTION from the index with a model that cites sources as [1], [2] (local, or at an endpoint)."""
    from rung.rag.answer import answer, check_generation
    from rung.rag.backend import check_location, load_index

    check_generation(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, k=k)  # before any load
    settings = settings_from_flags(RetrievalSettings, retrieval)
    check_location(index_dir)
    result = answer(load_index(index_dir, retrieval=settings), question, model=model, k=k, max_new_tokens=max_new_tokens,
                    temperature=temperature, top_p=top_p, trust_remote_code=trust_remote_code, api_base=api_base,
                    api_key_env=api_key_env)
    if as_json:
        click.echo(to_json(result, indent=2, ensure_ascii=False))
        return
    if result["note"]:
        click.echo(f"note: {result['note']}", err=True)
    click.echo(result["answer"] or "(the model produced no text)")
    click.echo("\nSources:")
    for s in result["sources"]:
        where = f"{s['source']}:{s['line']}" if s["page"] is None else f"{s['source']} p.{s['page']}"
        heading = f"  § {s['heading']}" if s["heading"] else ""
        click.echo(f"[{s['n']}] {where}{heading}  (score {s['score']:.3f}{', cited' if s['cited'] else ''})")


@rag.command("eval")
@click.option("--index", "index_dir", required=True, type=click.Path(path_type=str), help=INDEX_HELP)
@click.option("--queries", required=True, type=click.Path(path_type=str),
              help='JSONL of {"query": ..., "relevant": [paths]} or a BEIR qrels .tsv.')
@click.option("--query-texts", default=None, type=click.Path(path_type=str),
              help="BEIR queries.jsonl for a qrels .tsv [default: found next to it].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with recall@1/5/10, mrr@10, ndcg@10, queries.")
@settings_options(RetrievalSettings)
def eval_cmd(index_dir, queries, query_texts, as_json, **retrieval):
    """Score retrieval: recall@1/5/10, MRR@10 and nDCG@10 over documents (BEIR / pytrec_eval definitions)."""
    from rung.rag.backend import check_location, load_index
    from rung.rag.metrics import evaluate_index
    from rung.rag.metrics import KEYS, read_queries

    settings = settings_from_flags(RetrievalSettings, retrieval)
    check_location(index_dir)
    pairs = read_queries(queries, query_texts)
    result = evaluate_index(load_index(index_dir, retrieval=settings), pairs)
    unknown = result.pop("unknown_relevant")
    if unknown:
        click.echo(f"warning: {len(unknown)} relevant documents are not in the index (typo, or not indexed?): "
                   + ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else ""), err=True)
    if as_json:
        click.echo(to_json({k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}))
        return
    click.echo("  ".join(f"{k} {result[k]:.3f}" for k in KEYS) + f"  ({result['queries']} queries)")


@rag.command("info")
@click.option("--index", "index_dir", required=True, type=click.Path(path_type=str), help=INDEX_HELP)
def info_cmd(index_dir):
    """Show what an index holds: model, dimension, index type, chunker, counts."""
    from pathlib import Path

    from rung.core.errors import RungError
    from rung.rag.backend import is_url, load_index
    from rung.rag.store import read_manifest

    if is_url(index_dir):
        m = load_index(index_dir, load_model=False).manifest
    else:
        if not Path(index_dir).is_dir():
            raise RungError(f"{index_dir}: no such index folder")
        m = read_manifest(Path(index_dir))
        if m is None:
            raise RungError(f"{index_dir} is not a rung index (no manifest.json)")
    c, n = m["chunker"], m["counts"]
    click.echo(f"model      {m['model']} ({m['dim']} dims, {m.get('metric', '?')}, normalized={m.get('normalized', '?')})")
    engine = (f"PostgreSQL {m.get('postgresql_version', '?')}, pgvector {m.get('pgvector_version', '?')}, "
              f"table {m.get('table', '?')}") if m.get("store") == "postgresql" else f"faiss {m.get('faiss_version', '?')}"
    click.echo(f"index      {m['index_type']} (setting {m.get('index_type_setting', '?')}), {engine}")
    click.echo(f"chunker    {c['chunk_tokens']} tokens, {c['overlap']} overlap")
    click.echo(f"contents   {n.get('files', '?')} files, {n.get('documents', '?')} documents, {n['chunks']} chunks")
    click.echo(f"updated    {m.get('updated', '?')} (generation {m['generation']})")
