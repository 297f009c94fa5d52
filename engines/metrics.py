"""Task metrics for `rung probe` and `rung gate`: score a model's outputs against held-out references, with a
bootstrap confidence interval, and compare two models on the same rows.

Every metric is `fn(output, reference, **options) -> float` in [0, 1], listed once in METRICS; a user's own
`FILE.py:NAME` (core/user_metric.py) is accepted wherever a name is. `score()` runs
one over the rows; `paired_difference()` is the ship gate's test ("significantly better" = ci_low > 0).
Pure Python: sacrebleu (chrF) and rouge-score (ROUGE-L) are imported only when those metrics run, and
nothing here imports torch.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import random
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import short
from rung.core.user_metric import is_user_metric, load as load_user_metric

Metric = Callable[..., float]


# ---------------------------------------------------------------- text ------------------------------------

def normalize(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles (a, an, the), single spaces.
    Punctuation is any Unicode P* character, not only ASCII, so « » ¿ and CJK marks go too."""
    text = "".join(" " if unicodedata.category(c).startswith("P") or c in string.punctuation else c
                   for c in text.lower())
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


_FENCE = re.compile(r"\A```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)\n?[ \t]*```\Z", re.DOTALL)
_NOT_JSON = object()  # a sentinel: `null` is valid JSON, so None cannot mean "did not parse"


def parse_json(text: str) -> Any:
    """The JSON value in `text`, or _NOT_JSON. The whole output may be one ```json fenced block (models add
    fences even when told not to); prose around the JSON still fails, since a parser downstream would too."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except ValueError:  # JSONDecodeError, and the recursion/number limits json raises as ValueError
        return _NOT_JSON


def same_json(a: Any, b: Any) -> bool:
    """JSON equality. Python's == says True == 1 and 1.0 == True; JSON booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b  # 1 and 1.0 are the same JSON number
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------- metrics ---------------------------------

def exact_match(output: str, reference: str) -> float:
    return float(output.strip() == reference.strip())


def normalized_match(output: str, reference: str) -> float:
    return float(normalize(output) == normalize(reference))


def token_f1(output: str, reference: str) -> float:
    got, want = normalize(output).split(), normalize(reference).split()
    if not got or not want:  # SQuAD: two empty answers agree, one empty answer scores 0
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def json_valid(output: str, reference: str) -> float:
    return float(parse_json(output) is not _NOT_JSON)


@functools.lru_cache(maxsize=32)
def _validator(schema_text: str) -> Any:
    """One checked validator per distinct schema, not one per row."""
    import jsonschema

    schema = json.loads(schema_text)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise RungError(f"json_schema: not a valid JSON Schema: {error.message}") from None
    return cls(schema)


def json_schema(output: str, reference: str, schema: dict[str, Any] | bool | None = None) -> float:
    if schema is None:
        raise RungError("the json_schema metric needs a JSON Schema (the plan's `schema` data)")
    value = parse_json(output)
    return float(value is not _NOT_JSON and _validator(json.dumps(schema, sort_keys=True)).is_valid(value))


def json_match(output: str, reference: str) -> float:
    want = parse_json(reference)
    if want is _NOT_JSON:  # a broken reference is a data error, not a model error: say so instead of 0
        raise RungError(f"json_match: the reference is not valid JSON: {short(reference)}")
    got = parse_json(output)
    return float(got is not _NOT_JSON and same_json(got, want))


@functools.lru_cache(maxsize=1)
def _chrf() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF()  # chrF2, character 6-grams: sacrebleu's defaults, the numbers papers report


def chrf(output: str, reference: str) -> float:
    if not output.strip() and not reference.strip():
        return 1.0  # sacrebleu scores empty vs empty as 0; two empty answers agree
    return min(1.0, _chrf().sentence_score(output, [reference]).score / 100)


@functools.lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer  # imports nltk (~1.5 s): only when ROUGE-L is asked for

    class WordTokenizer:
        # rouge-score's default keeps only [a-z0-9], so any non-English text scores 0; \w is Unicode-aware.
        def tokenize(self, text: str) -> list[str]:
            return re.findall(r"\w+", text.lower())

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=WordTokenizer())


def rouge_l(output: str, reference: str) -> float:
    if not output.strip() and not reference.strip():
        return 1.0
    return _rouge().score(reference, output)["rougeL"].fmeasure  # score(target, prediction)


@functools.lru_cache(maxsize=32)
def _pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise RungError(f"regex: bad pattern {short(pattern)}: {error}") from None


def regex(output: str, reference: str, pattern: str | None = None) -> float:
    """A rubric: 1 when the trimmed output contains a match (re.search; anchor with ^ and $ for the whole)."""
    if pattern is None:
        raise RungError('the regex metric needs a pattern, e.g. "^Thanks" or "^[^.!?]*[.!?]$" (one sentence)')
    compiled = _pattern(pattern)  # checks the pattern as Python's re reads it
    try:
        import regex as regex_engine  # the same syntax, with a time limit (transformers depends on it)
    except ImportError:
        return float(compiled.search(output.strip()) is not None)
    try:
        return float(regex_engine.search(pattern, output.strip(), timeout=REGEX_TIMEOUT_S) is not None)
    except TimeoutError:
        raise RungError(f"regex: the pattern {short(pattern)} took over {REGEX_TIMEOUT_S:g} s on one answer "
                        "(nested repeats such as (a+)+ backtrack without end): simplify it") from None


REGEX_TIMEOUT_S = 1.0  # per answer; a real rubric pattern takes microseconds


METRICS: dict[str, tuple[Metric, str]] = {
    "exact_match": (exact_match, "output equals the reference, whitespace-trimmed"),
    "normalized_match": (normalized_match, "equal after SQuAD normalization (case, punctuation, articles, spaces)"),
    "token_f1": (token_f1, "SQuAD token F1: word overlap after normalization, partial credit"),
    "json_valid": (json_valid, "output parses as JSON (a ```json fenced block is accepted)"),
    "json_schema": (json_schema, "output parses as JSON and validates against the JSON Schema"),
    "json_match": (json_match, "output parses as JSON equal to the reference's JSON"),
    "chrf": (chrf, "chrF (sacrebleu), character n-gram F-score, scaled to 0..1"),
    "rouge_l": (rouge_l, "ROUGE-L F-measure (rouge-score): longest common word subsequence"),
    "regex": (regex, "output matches the regular expression `pattern` (a rubric)"),
}


def check_metric(name: str) -> str:
    """A built-in metric's name, or a user metric FILE.py:NAME once it imports (core/user_metric.py)."""
    if is_user_metric(name):
        load_user_metric(name)
        return name
    if name not in METRICS:
        raise RungError(f'unknown metric "{name}"{did_you_mean(name, METRICS)}; choose from {", ".join(METRICS)}, '
                        "or FILE.py:NAME (a function of yours)")
    return name


def _looks_like_json(text: str) -> bool:
    body = text.strip()
    return body[:1] in ("{", "[") and parse_json(body) is not _NOT_JSON


def choose_metric(goal: str, references: list[str], schema: Any = None, *, metric: str | None = None) -> str:
    """The default metric for a plan's goal; `metric` (the caller's --metric) wins once checked."""
    if metric is not None:
        return check_metric(metric)
    if schema is not None:
        return "json_schema"
    if references and all(_looks_like_json(r) for r in references):
        return "json_match"
    if goal == "style":
        return "chrf"  # style is about form, not exact words: character n-grams give partial credit
    # a fixed format that is not JSON (SQL, a template): overlap for long answers, the answer for short ones
    if goal in ("domain_task", "facts", "schema"):
        words = sum(len(r.split()) for r in references) / max(1, len(references))
        return "token_f1" if words > 5 else "normalized_match"  # long answers: overlap; short: the answer
    return "exact_match"


# ---------------------------------------------------------------- statistics ------------------------------

@dataclass(frozen=True)
class Score:
    metric: str
    n: int
    mean: float
    ci_low: float  # 95% percentile bootstrap over rows
    ci_high: float
    per_row: list[float]


def bootstrap_ci(values: list[float], *, resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean: resample rows with replacement, read the 2.5% and 97.5%
    points of the resampled means. Seeded, so the same rows always give the same interval."""
    n = len(values)
    if n == 0:
        raise RungError("no rows to score")
    if min(values) == max(values):  # n == 1 or all equal: every resample is the same
        return values[0], values[0]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    # 2,000 resamples at 0.95: indexes 50 and 1,949 of the sorted means, as many below the one as above the other.
    # round, not int: (1 - 0.9) / 2 * 2000 is 99.99999999999997 in floating point, which int() cut to 99
    low = round((1 - level) / 2 * resamples)
    return means[low], means[resamples - 1 - low]


def _check_options(metric: str, options: dict[str, Any]) -> None:
    function = METRICS[metric][0]
    accepted = list(inspect.signature(function).parameters)[2:]
    for key in options:
        if key not in accepted:
            takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
            raise RungError(f'unknown option "{key}" for metric "{metric}"{did_you_mean(key, accepted)}; {takes}')


def score(outputs: list[str], references: list[str], metric: str, *, resamples: int = 2000, seed: int = 0,
          rows: list[dict[str, Any]] | None = None, **options: Any) -> Score:
    """Score every row with `metric` (options such as schema= or pattern= go to it) and bootstrap the mean.
    A user metric (FILE.py:NAME) also gets each row's record (`rows`, core/rows.py)."""
    check_metric(metric)
    if len(outputs) != len(references):
        raise RungError(f"{len(outputs)} outputs but {len(references)} references: they must pair up row by row")
    if not references:
        raise RungError("no rows to score: the eval set is empty")
    if is_user_metric(metric):
        user = load_user_metric(metric)
        records = rows if rows is not None else [{"output": r} for r in references]
        per_row = [user(o, r, dict(row), i) for i, (o, r, row) in enumerate(zip(outputs, references, records))]
    else:
        _check_options(metric, options)
        function = METRICS[metric][0]
        per_row = [min(1.0, max(0.0, float(function(o, r, **options)))) for o, r in zip(outputs, references)]
    low, high = bootstrap_ci(per_row, resamples=resamples, seed=seed)
    return Score(metric, len(per_row), sum(per_row) / len(per_row), low, high, per_row)


def mcnemar_exact(a: list[float], b: list[float]) -> float:
    """Two-sided exact McNemar p-value for paired 0/1 scores: a binomial test on the discordant rows."""
    only_a = sum(1 for x, y in zip(a, b) if x > y)
    only_b = sum(1 for x, y in zip(a, b) if y > x)
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2 ** discordant)


def paired_difference(scores_a: list[float], scores_b: list[float], *, resamples: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """Candidate (a) minus baseline (b), scored on the same rows: mean difference, paired bootstrap 95% CI
    (rows resampled together, so row difficulty cancels) and a two-sided p-value. For 0/1 scores the p-value
    is McNemar's exact test; otherwise a paired bootstrap test (resampled differences shifted to mean 0).
    `significant` needs both the CI to exclude 0 and p < 0.05: on a few rows the percentile CI collapses
    (3 rows, 3 wins: CI [1, 1]) while the test still says p = 0.25."""
    if len(scores_a) != len(scores_b):
        raise RungError(f"{len(scores_a)} candidate scores but {len(scores_b)} baseline scores: "
                        "both models must be scored on the same rows")
    if not scores_a:
        raise RungError("no rows to compare")
    n = len(scores_a)
    diffs = [a - b for a, b in zip(scores_a, scores_b)]
    mean = sum(diffs) / n
    low, high = bootstrap_ci(diffs, resamples=resamples, seed=seed)
    if all(v in (0.0, 1.0) for v in (*scores_a, *scores_b)):
        test, p_value = "mcnemar_exact", mcnemar_exact(scores_a, scores_b)
    else:
        rng = random.Random(seed + 1)  # not the CI's stream: the two should not share their draws
        extreme = sum(1 for _ in range(resamples)
                      if abs(sum(rng.choices(diffs, k=n)) / n - mean) >= abs(mean) - 1e-12)
        test, p_value = "paired_bootstrap", (1 + extreme) / (1 + resamples)  # +1: a p-value is never 0
    return {"difference": mean, "ci_low": low, "ci_high": high, "p_value": p_value, "test": test, "n": n,
            "significant": (low > 0 or high < 0) and p_value < 0.05}
