"""The embedded default's synthetic reasoning task: GSM8K-style multi-step word problems, as code.

A problem is a start count and 1-5 operations (+n, -n, doubling) told as a short story:

    Mia has 7 apples. She buys 3, loses 2, doubles them. How many apples does she have now?

and its worked solution writes each step in a randomly chosen phrasing, e.g.

    So 7+3=10; 10 - 2 = 8, 8*2 is 16 #### 16

The phrasing is random on purpose: with one fixed format the target is a function of the question,
and a model that truly solves the task drives the target NLL to zero just as one that memorized it
does. The irreducible entropy of the phrasing (the "style floor") is recorded per solution, so a
memorization threshold can be set against it.

Every problem has a *spec* (name, item, operation verbs, operand size). A seed's pool items keep
the seed's spec and redraw the numbers and the phrasing: the "similar problems" of the paper's
pool. Dev and test problems are drawn from fresh specs. Numbers stay in 0..30 by rejection.

Only numpy is needed to draw problems, so the pretraining script also runs where polars is absent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

NAMES = (("Mia", "she"), ("Eva", "she"), ("Ana", "she"), ("Zoe", "she"),
         ("Tom", "he"), ("Sam", "he"), ("Leo", "he"), ("Max", "he"))
ITEMS = ("apples", "pens", "coins", "books", "cards", "shells", "stamps", "marbles")
ADD_VERBS = ("buys", "finds", "gets")
SUB_VERBS = ("loses", "sells", "gives away")
DOUBLE_VERB = "doubles them"
VERBS = (*ADD_VERBS, *SUB_VERBS, DOUBLE_VERB)
OPERAND_RANGES = {"small": (1, 5), "big": (6, 9)}  # inclusive
START_RANGE = (2, 15)  # inclusive
MAX_VALUE = 30  # every value of a problem lies in 0..MAX_VALUE
MAX_STEPS = 5  # the shipped model's context (256 tokens) is sized for this

# One step "a op n -> r" in each phrasing; the operator itself is always + - or *.
STEP_STYLES = ("{a}{op}{n}={r}", "{a} {op} {n} = {r}", "{a}{op}{n} is {r}", "{a}{op}{n}: {r}")
SEPARATORS = ("; ", ", ")
PREFIXES = ("", "So ", "Ok, ")
TARGET_SUFFIX = "\nDone."
ANSWER_MARK = "#### "

# Specs with fewer valid numberings are redrawn, so any seed can have up to MIN_VARIANTS - 1 pool items.
MIN_VARIANTS = 16


@dataclass(frozen=True)
class Spec:
    """What a seed and its pool items share: who, what, which operations, how big the operands."""

    name: str
    pronoun: str
    item: str
    verbs: tuple[str, ...]
    size: str  # a key of OPERAND_RANGES


@dataclass(frozen=True)
class Problem:
    """One drawn problem: its spec, text, answer and the per-token entropy of its phrasing."""

    spec: Spec
    start: int
    operands: tuple[int, ...]
    question: str
    solution: str
    answer: str
    steps: int
    style_floor: float


def _max_doubles(steps: int) -> int:
    # Few doublings keep every spec's number space large enough for distinct pool items.
    return min(2, max(1, steps // 2))


def _apply(verb: str, value: int, operand: int) -> tuple[str, int]:
    if verb in ADD_VERBS:
        return "+", value + operand
    if verb in SUB_VERBS:
        return "-", value - operand
    return "*", value * 2


def draw_spec(rng: np.random.Generator, steps: int) -> Spec:
    """A random spec with `steps` operations (verbs uniform, at most `_max_doubles` doublings)."""
    name, pronoun = NAMES[rng.integers(len(NAMES))]
    item = ITEMS[rng.integers(len(ITEMS))]
    while True:
        verbs = tuple(VERBS[i] for i in rng.integers(len(VERBS), size=steps))
        if verbs.count(DOUBLE_VERB) <= _max_doubles(steps):
            break
    size = ("small", "big")[rng.integers(2)]
    return Spec(name, pronoun, item, verbs, size)


def _draw_numbers(rng: np.random.Generator, spec: Spec) -> tuple[int, list[int]] | None:
    """One uniform draw of start value and operands; None if a value leaves 0..MAX_VALUE."""
    lo, hi = OPERAND_RANGES[spec.size]
    start = int(rng.integers(START_RANGE[0], START_RANGE[1] + 1))
    operands = [2 if v == DOUBLE_VERB else int(rng.integers(lo, hi + 1)) for v in spec.verbs]
    value = start
    for verb, n in zip(spec.verbs, operands):
        value = _apply(verb, value, n)[1]
        if not 0 <= value <= MAX_VALUE:
            return None
    return start, operands


def valid_numbers(spec: Spec) -> np.ndarray:
    """Every valid (start, operand_1, ..., operand_k) of a spec, one row each, in a fixed order.

    Sampling a row uniformly is the same as drawing numbers uniformly and rejecting those that
    leave 0..MAX_VALUE, without the retries (some specs accept fewer than 1 draw in 1,000).
    """
    lo, hi = OPERAND_RANGES[spec.size]
    axes = [np.arange(START_RANGE[0], START_RANGE[1] + 1)]
    axes += [np.array([2]) if v == DOUBLE_VERB else np.arange(lo, hi + 1) for v in spec.verbs]
    grid = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    value, ok = grid[:, 0].copy(), np.ones(len(grid), dtype=bool)
    for j, verb in enumerate(spec.verbs, start=1):
        value = value + grid[:, j] if verb in ADD_VERBS else value - grid[:, j] if verb in SUB_VERBS else value * 2
        ok &= (value >= 0) & (value <= MAX_VALUE)
    return grid[ok]


def style_entropy(steps: int) -> float:
    """Irreducible entropy (nats) of a solution's phrasing given its question: prefix, one
    style per step and one separator per junction, all uniform and all visible in the text."""
    return math.log(len(PREFIXES)) + steps * math.log(len(STEP_STYLES)) + (steps - 1) * math.log(len(SEPARATORS))


def target_text(solution: str) -> str:
    """The fine-tuning target for a solution (the paper's format); EOS follows it as one token."""
    return " " + solution + TARGET_SUFFIX


def _write(rng: np.random.Generator, spec: Spec, start: int, operands: list[int]) -> Problem:
    ops = [DOUBLE_VERB if v == DOUBLE_VERB else f"{v} {n}" for v, n in zip(spec.verbs, operands)]
    question = (f"{spec.name} has {start} {spec.item}. {spec.pronoun.capitalize()} {', '.join(ops)}. "
                f"How many {spec.item} does {spec.pronoun} have now?")
    parts, value = [], start
    for verb, n in zip(spec.verbs, operands):
        op, result = _apply(verb, value, n)
        style = STEP_STYLES[rng.integers(len(STEP_STYLES))]
        parts.append(style.format(a=value, op=op, n=n, r=result))
        value = result
    text = PREFIXES[rng.integers(len(PREFIXES))] + parts[0]
    for part in parts[1:]:
        text += SEPARATORS[rng.integers(len(SEPARATORS))] + part
    solution = f"{text} {ANSWER_MARK}{value}"
    steps = len(spec.verbs)
    # Target tokens: one per character of the target text, plus the EOS token.
    floor = style_entropy(steps) / (len(target_text(solution)) + 1)
    return Problem(spec, start, tuple(operands), question, solution, str(value), steps, floor)


def draw_problem(rng: np.random.Generator, steps: int) -> Problem:
    """A problem with a fresh spec of `steps` operations.

    Spec and numbers are drawn together and rejected together when a value leaves 0..MAX_VALUE,
    and specs with fewer than MIN_VARIANTS valid numberings are redrawn, so every problem's spec
    has enough siblings for a pool.
    """
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in 1..{MAX_STEPS}, got {steps}")
    while True:
        spec = draw_spec(rng, steps)
        numbers = _draw_numbers(rng, spec)
        if numbers is not None and len(valid_numbers(spec)) >= MIN_VARIANTS:
            return _write(rng, spec, *numbers)


def siblings(rng: np.random.Generator, problem: Problem, k: int) -> list[Problem]:
    """`k` distinct siblings of a problem: same spec, other numbers (uniform among the valid ones
    without replacement, never the problem's own), new phrasing."""
    rows = valid_numbers(problem.spec)
    own = (rows == np.array([problem.start, *problem.operands])).all(axis=1)
    others = np.flatnonzero(~own)
    if k > len(others):
        raise ValueError(f"spec {problem.spec} has only {len(others)} other numberings, {k} asked")
    picks = rng.choice(others, size=k, replace=False)
    return [_write(rng, problem.spec, int(rows[i, 0]), rows[i, 1:].tolist()) for i in picks]


def draw_problems(n: int, min_steps: int, max_steps: int, seed: int) -> list[Problem]:
    """`n` problems with fresh specs and steps uniform in min_steps..max_steps, deterministic in `seed`."""
    rng = np.random.default_rng([seed, 99])
    return [draw_problem(rng, int(rng.integers(min_steps, max_steps + 1))) for _ in range(n)]


def _fresh(rng: np.random.Generator, min_steps: int, max_steps: int, taken: set[str]) -> Problem:
    while True:
        problem = draw_problem(rng, int(rng.integers(min_steps, max_steps + 1)))
        if problem.question not in taken:
            taken.add(problem.question)
            return problem


def make_task(n_seeds: int, pool_per_seed: int, n_dev: int, n_test: int,
              min_steps: int = 2, max_steps: int = 5, seed: int = 0):
    """The embedded task as an Examples frame (loop/schema.py), deterministic in `seed`.

    Writes columns: id ("seed-0007", "pool-0007-2", "dev-0003", "test-0100"), seed_id (a pool
    row's seed id, else null), question, solution, answer (final number as a string), split
    (seed | pool | dev | test), steps (Int64), style_floor (Float64: phrasing entropy in nats per
    target token, target = " " + solution + "\\nDone." plus EOS, one token per character).
    Seed, dev and test questions are pairwise distinct; pool items differ from their seed and from
    each other, and no dev or test question equals a seed or pool question.
    """
    # Imported here so the pretraining script, which only draws problems, runs without polars.
    import polars as pl

    for field, value in (("n_seeds", n_seeds), ("pool_per_seed", pool_per_seed), ("n_dev", n_dev), ("n_test", n_test)):
        if value < 0:
            raise ValueError(f"make_task: {field} must be >= 0, got {value}")
    if not 1 <= min_steps <= max_steps <= MAX_STEPS:
        raise ValueError(f"make_task: need 1 <= min_steps <= max_steps <= {MAX_STEPS}, got {min_steps}, {max_steps}")
    if pool_per_seed >= MIN_VARIANTS:
        raise ValueError(f"make_task: pool_per_seed must be < {MIN_VARIANTS} (each spec guarantees {MIN_VARIANTS} "
                         f"numberings), got {pool_per_seed}")

    rows: list[dict] = []

    def add(id_: str, seed_id: str | None, split: str, p: Problem) -> None:
        rows.append({"id": id_, "seed_id": seed_id, "question": p.question, "solution": p.solution,
                     "answer": p.answer, "split": split, "steps": p.steps, "style_floor": p.style_floor})

    taken: set[str] = set()
    # Separate streams per split (and per seed for the pool), so one split's size never changes another's draws.
    seed_rng = np.random.default_rng([seed, 0])
    seeds = [_fresh(seed_rng, min_steps, max_steps, taken) for _ in range(n_seeds)]
    for i, p in enumerate(seeds):
        add(f"seed-{i:04d}", None, "seed", p)
    for i, p in enumerate(seeds):
        sid = f"seed-{i:04d}"
        for j, sib in enumerate(siblings(np.random.default_rng([seed, 1, i]), p, pool_per_seed)):
            add(f"pool-{i:04d}-{j}", sid, "pool", sib)
            taken.add(sib.question)
    for split, n, stream in (("dev", n_dev, 2), ("test", n_test, 3)):
        rng = np.random.default_rng([seed, stream])
        for i in range(n):
            add(f"{split}-{i:04d}", None, split, _fresh(rng, min_steps, max_steps, taken))

    schema = {"id": pl.String, "seed_id": pl.String, "question": pl.String, "solution": pl.String,
              "answer": pl.String, "split": pl.String, "steps": pl.Int64, "style_floor": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _equation(rng: np.random.Generator) -> str:
    """One step in a random phrasing, with operand and result in 0..MAX_VALUE."""
    while True:
        verb = VERBS[rng.integers(len(VERBS))]
        lo, hi = OPERAND_RANGES[("small", "big")[rng.integers(2)]]
        a = int(rng.integers(0, MAX_VALUE + 1))
        n = 2 if verb == DOUBLE_VERB else int(rng.integers(lo, hi + 1))
        op, r = _apply(verb, a, n)
        if 0 <= r <= MAX_VALUE:
            return STEP_STYLES[rng.integers(len(STEP_STYLES))].format(a=a, op=op, n=n, r=r)


def pretraining_text(rng: np.random.Generator) -> str:
    """One document of the pretraining corpus.

    Half are lines of about 100 characters packing one-step equations in the solution styles;
    half are full problems "{question}\\nAnswer: {solution}\\nDone." with 1-5 steps, uniform,
    so no length the fine-tuning mix uses is unseen (which would make a cliff in base accuracy).
    """
    if rng.random() < 0.5:
        text = _equation(rng)
        while len(text) < 100:
            text += SEPARATORS[rng.integers(len(SEPARATORS))] + _equation(rng)
        return text
    p = draw_problem(rng, int(rng.integers(1, MAX_STEPS + 1)))
    return f"{p.question}\nAnswer:{target_text(p.solution)}"


def prompt_text(question: str) -> str:
    """The prompt for a question, in the paper's format; the target follows it directly."""
    return f"{question}\nAnswer:"


def answer_of(completion: str) -> str | None:
    """The final answer in a completion: the text after the last "#### ", cut at "\\nDone.",
    stripped; None when there is no "#### " or nothing follows it."""
    at = completion.rfind(ANSWER_MARK)
    if at < 0:
        return None
    answer = completion[at + len(ANSWER_MARK):].split(TARGET_SUFFIX, 1)[0].strip()
    return answer or None


_QUESTION = re.compile(r"^(?P<name>\w+) has (?P<start>\d+) (?P<item>\w+)\. (?P<Pronoun>\w+) (?P<ops>.+)\. "
                       r"How many (?P=item) does (?P<pronoun>\w+) have now\?$")


def parse_problem(question: str) -> Problem | None:
    """The problem a question of this task tells (its spec, start and operands), or None for any other text.

    Its solution and phrasing are not recovered (a sibling gets new ones); the operand size is read from the
    operands (all small, or otherwise big)."""
    match = _QUESTION.match(question)
    if match is None:
        return None
    verbs, operands = [], []
    for op in match["ops"].split(", "):
        if op == DOUBLE_VERB:
            verbs.append(DOUBLE_VERB)
            operands.append(0)
            continue
        verb, _, number = op.rpartition(" ")
        if verb not in ADD_VERBS + SUB_VERBS or not number.isdigit():
            return None
        verbs.append(verb)
        operands.append(int(number))
    numbers = [n for v, n in zip(verbs, operands) if v != DOUBLE_VERB]
    low, high = OPERAND_RANGES["small"]
    size = "small" if all(low <= n <= high for n in numbers) else "big"
    spec = Spec(match["name"], match["pronoun"], match["item"], tuple(verbs), size)
    return Problem(spec, int(match["start"]), tuple(operands), question, "", "", len(verbs), 0.0)
