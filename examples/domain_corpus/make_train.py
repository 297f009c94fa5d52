"""Write data/train.jsonl and data/eval.jsonl: instruction examples for the SFT step that follows continued pretraining.

Each row asks for one sea area's forecast in plain words and answers with the telegraphic line from the
corpus, so after CPT has taught the register, SFT restores question -> answer behaviour. Deterministic.

    python examples/domain_corpus/make_train.py      # reads corpus/forecasts.txt, rewrites data/*.jsonl
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SEED = 11
N_TRAIN, N_EVAL = 80, 12
HERE = Path(__file__).resolve().parent
QUESTIONS = ["What is the forecast for {area}?", "Give me the shipping forecast for {area}.",
             "Forecast for {area}, please.", "What weather should I expect at {area}?"]


def main() -> None:
    lines = (HERE / "corpus" / "forecasts.txt").read_text(encoding="utf-8").splitlines()
    pairs = []
    for line in lines:
        match = re.match(r"^([A-Z][A-Za-z ]+)\. (Wind .+)$", line)
        if match:
            pairs.append((match.group(1), match.group(2)))
    rng = random.Random(SEED)
    rng.shuffle(pairs)
    rows = [{"messages": [{"role": "user", "content": rng.choice(QUESTIONS).format(area=area)},
                          {"role": "assistant", "content": f"{area}. {forecast}"}]}
            for area, forecast in pairs[: N_TRAIN + N_EVAL]]
    (HERE / "data").mkdir(exist_ok=True)
    for name, part in (("train.jsonl", rows[:N_TRAIN]), ("eval.jsonl", rows[N_TRAIN:])):
        (HERE / "data" / name).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")


if __name__ == "__main__":
    main()
