"""`rung run` entries for the rag route: `rag_index` and `rag_eval` steps (core/protocol.py).

    steps:
      - id: index
        engine: rag_index
        settings: {chunk_tokens: 0, overlap: 16, model: null, index_type: auto}   # 0 = 128 or the model's limit
      - id: eval
        engine: rag_eval
        settings: {retrieval: dense}

The index lives in the step's run folder (run_dir/index) unless `index` names a folder or a database URL
(postgresql://USER@HOST:PORT/DB?table=NAME); a re-run or a resume only embeds what changed.
"""

from __future__ import annotations

from rung.core.errors import RungError
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import RagEvalSettings, RagIndexSettings
from rung.rag.metrics import evaluate_index


def index_step(step: dict, ctx: StepContext) -> StepResult:
    from rung.rag.ingest import ingest

    settings = step_settings(RagIndexSettings, step, ctx)
    sources = ctx.data_paths("documents")
    if not sources:
        raise RungError(f'step {step.get("id")}: rag_index needs data.documents (a folder or files) in the plan')
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise RungError([f"data.documents: {p}: no such file or folder" for p in missing])
    index_dir = settings.index or ctx.run_dir / "index"
    summary = ingest([str(p) for p in sources], index_dir, model=settings.model, chunk_tokens=settings.chunk_tokens,
                     overlap=settings.overlap, index_type=settings.index_type, batch_size=settings.batch_size,
                     follow_symlinks=bool(getattr(settings, "follow_symlinks", False)), progress=False)
    metrics = {"files": summary.files_indexed, "files_skipped": sum(summary.skipped.values()),
               "chunks": summary.chunks, "chunks_added": summary.added, "chunks_kept": summary.kept,
               "chunks_removed": summary.removed, "chunks_embedded": summary.embedded,
               "bad_lines": sum(b["count"] for b in summary.bad_lines.values()), "seconds": round(summary.seconds, 2)}
    return StepResult(outputs={"index_dir": str(index_dir)}, metrics=metrics,
                      summary=f"Indexed {summary.chunks} chunks from {summary.files_indexed} files "
                              f"({summary.index_type}).\n\n`{summary.line()}`"
                              + "".join(f"\n\n- {note}" for note in summary.bad_line_notes()))


def eval_step(step: dict, ctx: StepContext) -> StepResult:
    from rung.core.settings import RetrievalSettings
    from rung.rag.backend import load_index
    from rung.rag.metrics import read_queries

    settings = step_settings(RagEvalSettings, step, ctx)
    retrieval = RetrievalSettings(**{f: getattr(settings, f) for f in ("retrieval", "keyword_weight", "rrf_k")})
    index_dir = None
    for output in reversed(list(ctx.outputs.values())):
        if isinstance(output, dict) and output.get("index_dir"):
            index_dir = output["index_dir"]
            break
    if index_dir is None:
        raise RungError(f'step {step.get("id")}: rag_eval needs an earlier rag_index step in the plan')
    queries_path = ctx.data_path("queries")
    if queries_path is None:
        raise RungError(f'step {step.get("id")}: rag_eval needs data.queries (JSONL of {{query, relevant}}) in the plan')
    result = evaluate_index(load_index(index_dir, retrieval=retrieval), read_queries(queries_path))
    metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "unknown_relevant"}
    summary = " · ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k != "queries") + f" over {metrics['queries']} queries"
    if result["unknown_relevant"]:
        summary += f"\n\nRelevant documents not in the index: {', '.join(result['unknown_relevant'][:10])}"
    recall = metrics.get("recall@10")
    if isinstance(recall, (int, float)) and recall < settings.target:
        documents = " ".join(str(p) for p in ctx.data_paths("documents")) or "DOCS"
        summary += (f"\n\n**Below target:** recall@10 {recall:.0%} against {settings.target:.0%}. Retrieval comes "
                    "first: no rung above it fixes documents that are never found. Improve the index (chunk_tokens, "
                    "overlap, a stronger embedding model), then measure the answers on your model and let the numbers "
                    "pick the next rung:\n\n```\n"
                    f"rung probe --answers ANSWERS.yaml --eval EVAL.jsonl --docs {documents} --model MODEL --out probe\n"
                    "rung plan --answers ANSWERS.yaml --evidence probe/evidence.yaml --out plan\n```")
    return StepResult(outputs={"index_dir": index_dir}, metrics=metrics, summary=summary)
