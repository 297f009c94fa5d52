"""Write data/pairs.jsonl (preference pairs) and data/train.jsonl (SFT rows) for the SFT-then-DPO example.

Deterministic. Prompts are the SQL assistant's (system prompt + question, see ../sql_assistant/make_data.py).
chosen is the terse, correct SQL; rejected is either a chatty answer that wraps the same SQL in prose and a
code fence (the behaviour DPO should push away from) or a plausible but wrong query.

    python examples/preferences/make_data.py
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("sql_make_data", HERE.parent / "sql_assistant" / "make_data.py")
sql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sql)

SEED = 11
N_PAIRS = 200
N_SFT = 160

OPENERS = ["Sure! Here is the query you need:", "Great question! You can use this SQL:",
           "Of course. The following query should work:", "Happy to help! Try this:"]
CLOSERS = ["Let me know if you need anything else!", "This selects exactly what you asked for.",
           "Hope this helps!", "Feel free to ask a follow-up question."]


def wrong(query: str, rng: random.Random) -> str:
    """A plausible mistake: a dropped filter, a wrong aggregate, or a wrong column."""
    if " WHERE " in query and rng.random() < 0.5:
        return query.split(" WHERE ")[0] + ";"
    for a, b in (("COUNT(*)", "SUM(*)"), ("AVG(", "MAX("), ("MAX(", "MIN("), ("SUM(", "COUNT("),
                 ("DESC", "ASC"), (" > ", " < "), ("salary", "budget"), ("city", "name")):
        if a in query:
            return query.replace(a, b, 1)
    return query.replace("SELECT ", "SELECT * , ", 1)


def chatty(query: str, rng: random.Random) -> str:
    return f"{rng.choice(OPENERS)}\n\n```sql\n{query}\n```\n\n{rng.choice(CLOSERS)}"


def main() -> None:
    rng = random.Random(SEED)
    pairs = sql.qa_pairs(N_PAIRS, seed=SEED)
    rows = []
    for index, (question, query) in enumerate(pairs):
        prompt = [{"role": "system", "content": sql.SYSTEM}, {"role": "user", "content": question}]
        bad = chatty(query, rng) if index % 5 < 3 else wrong(query, rng)  # 60% chatty, 40% wrong
        if bad == query:
            bad = chatty(query, rng)
        rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": query}],
                     "rejected": [{"role": "assistant", "content": bad}]})
    sql.write_jsonl(HERE / "data" / "pairs.jsonl", rows)
    sft_rows = [sql.chat_row(q, s) for q, s in sql.qa_pairs(N_SFT, seed=SEED + 100)]
    sql.write_jsonl(HERE / "data" / "train.jsonl", sft_rows)
    print(f"wrote {len(rows)} pairs and {len(sft_rows)} SFT rows to {HERE / 'data'}")


if __name__ == "__main__":
    main()
