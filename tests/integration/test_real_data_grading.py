"""The graders on real reference solutions (../shared/data): GSM8K train/test and MATH train/test.

Every reference solution graded against its own extracted answer must be correct; graded against
the next problem's answer (a shifted pairing) it must be wrong unless the two answers are equal.
GSM8K is graded in full. MATH is sampled (every MATH_STRIDE-th problem, 1/8 = 12.5%) to keep the
test near 30 s on two CPU cores; CURATION_FULL_GRADING=1 grades all of it (about 3 minutes).
Answers are extracted from every row either way (extraction is cheap).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from loop.grading import grade_many, reference_answer

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MATH_STRIDE = 1 if os.environ.get("CURATION_FULL_GRADING") == "1" else 8

# Published solutions with no extractable final answer: their \boxed{} is empty. Both are
# number-theory problems whose answer is 0 ("there are $\boxed{}$ primes in that range").
NO_ANSWER = {("math", "train"): {"train/number_theory/7115.json", "train/number_theory/7117.json"}}

# Shifted pairs (this solution's answer, the next problem's answer) whose strings differ but that
# math-verify grades equal, from a full run over all four splits; each audited by hand.
EQUIVALENT = {
    (r"\frac{3}{4}", r"\frac34"),  # the same fraction
    (r"120^\circ", "120"),  # degrees: MATH writes angle answers with and without ^\circ
    ("120", r"120^\circ"),
    (r"7\%", "7"),  # a percentage against the bare number, which the other problem asks for
    (r"25\%", "25"),
    ("8", "K=8"),  # the value of an assignment
    (r"21\text{ dogs}", "21"),  # units in \text{}
    (r"18 \text{ degrees}", "18"),
    # Not equal, graded equal: math-verify reads an equation prediction by its right-hand side
    # when the gold answer is a bare number. A plane equation "... = 0" against gold "0" is the
    # one case in MATH; it needs a gold answer of exactly 0 and a prediction ending in "= 0".
    (r"2x - y + 2z - 18 = 0", "0"),
}

SPLITS = [
    ("gsm8k", "train", "gsm8k/train.jsonl", "answer", 1),
    ("gsm8k", "test", "gsm8k/test.jsonl", "answer", 1),
    ("math", "train", "math/train.jsonl", "solution", MATH_STRIDE),
    ("math", "test", "math/test.jsonl", "solution", MATH_STRIDE),
]


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data absent")
@pytest.mark.parametrize(("task", "split", "file", "field", "stride"), SPLITS, ids=[f"{s[0]}-{s[1]}" for s in SPLITS])
def test_reference_solutions_grade_against_their_own_answer_only(task, split, file, field, stride):
    path = DATA / file
    if not path.is_file():
        pytest.skip(f"{path} absent")
    rows = [json.loads(line) for line in path.open()]
    answers = [reference_answer(r[field], task) for r in rows]
    missing = {rows[i].get("unique_id", i) for i, a in enumerate(answers) if a is None}
    assert missing == NO_ANSWER.get((task, split), set())

    kept = [i for i, a in enumerate(answers) if a is not None]
    solutions = [rows[i][field] for i in kept]
    own = [answers[i] for i in kept]
    other = own[1:] + own[:1]  # each solution against the next problem's answer
    sample = range(0, len(kept), stride)

    start = time.perf_counter()
    self_grades = grade_many([solutions[i] for i in sample], [own[i] for i in sample], task)
    self_s = time.perf_counter() - start
    start = time.perf_counter()
    shifted = grade_many([solutions[i] for i in sample], [other[i] for i in sample], task)
    shifted_s = time.perf_counter() - start

    n = len(sample)
    self_rate = sum(g.correct for g in self_grades) / n
    equal = [own[i].strip() == other[i].strip() for i in sample]
    wrong_when_different = [not g.correct for g, eq in zip(shifted, equal) if not eq]
    unexpected = [
        (own[i], other[i]) for g, eq, i in zip(shifted, equal, sample) if g.correct and not eq
    ]
    print(
        f"\n{task} {split}: {n}/{len(rows)} graded ({n / len(rows):.1%}); own answer correct "
        f"{self_rate:.2%}; shifted pairs with different answers graded wrong "
        f"{sum(wrong_when_different)}/{len(wrong_when_different)} "
        f"({sum(wrong_when_different) / len(wrong_when_different):.2%}), equal answers {sum(equal)}; "
        f"{n / self_s:.0f} grades/s own, {n / shifted_s:.0f} grades/s shifted"
    )
    assert self_rate == 1.0, [own[i] for g, i in zip(self_grades, sample) if not g.correct][:20]
    assert all(g.correct for g, eq in zip(shifted, equal) if eq)
    assert set(unexpected) <= EQUIVALENT, sorted(set(unexpected) - EQUIVALENT)
    assert all(g.parsed for g in self_grades)
