"""Hand-made cases for each grading rule (embedded, GSM8K, MATH), and grading off the main thread."""

from __future__ import annotations

import threading
import time

import pytest

from loop.grading import Grade, extract_answer, grade, grade_many, is_correct, reference_answer


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("So 7+3=10; 10 - 2 = 8 #### 8\nDone.", "8", Grade(True, True)),
        ("#### 3 then again #### 8\nDone.", "8", Grade(True, True)),  # the last mark counts
        ("#### 8  \nDone. and more text", "8", Grade(True, True)),  # cut at Done., stripped
        ("#### 08\nDone.", "8", Grade(False, True)),  # exact string, no numeric equivalence
        ("#### 8.0", "8", Grade(False, True)),
        ("so the result is 8\nDone.", "8", Grade(False, False)),  # no mark: unparseable
        ("####8\nDone.", "8", Grade(False, False)),  # the mark is "#### " with its space
        ("#### \nDone.", "8", Grade(False, False)),  # nothing after the mark
    ],
)
def test_embedded_rule(completion, reference, expected):
    assert grade(completion, reference, "embedded") == expected


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("48/2 = <<48/2=24>>24\n#### 72\nDone.", "72", Grade(True, True)),
        ("#### 1,000", "1000", Grade(True, True)),  # commas
        ("#### 1000", "1,000", Grade(True, True)),  # commas in the reference too
        ("#### $18.00", "18", Grade(True, True)),  # dollar sign, decimals equal to an integer
        ("The answer is 18 dollars.", "18", Grade(True, True)),  # trailing unit
        ("The answer is: 42", "42", Grade(True, True)),  # MetaMathQA's phrasing
        ("#### -3", "-3", Grade(True, True)),
        ("#### 0.5", "1/2", Grade(True, True)),
        ("The answer is 5.\nWait, recount.\n#### 7", "7", Grade(True, True)),  # last anchor
        ("The answer is 5.\nWait, recount.\n#### 7", "5", Grade(False, True)),
        ("#### 18.5", "18", Grade(False, True)),
        ("#### 17", "18", Grade(False, True)),
        ("She has 18 apples left.", "18", Grade(False, False)),  # no anchor: unparseable
        ("#### ", "18", Grade(False, False)),
    ],
)
def test_gsm8k_rule(completion, reference, expected):
    assert grade(completion, reference, "gsm8k") == expected


_TWO_BOXES = (
    r"A first guess is $\boxed{3}$. That fails the second condition once we substitute it back into "
    r"the original equation, so we try the next candidate. Finally $\boxed{4}$."
)


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        (r"so $x = \boxed{\dfrac{1}{2}}$.", r"\frac{1}{2}", Grade(True, True)),  # \dfrac
        (r"$\boxed{0.5}$", r"\frac12", Grade(True, True)),  # fraction vs decimal
        (r"$\boxed{\frac{\sqrt{3}}{2}}$", r"\frac{\sqrt3}{2}", Grade(True, True)),  # nested braces
        (r"$\boxed{\text{(C)}}$", r"\text{(C)}", Grade(True, True)),
        (r"$\boxed{\textbf{(C)}}$", r"\text{(C)}", Grade(True, True)),
        (r"$\boxed{\text{(B)}}$", r"\text{(C)}", Grade(False, True)),
        (r"$\boxed{30^\circ}$", "30", Grade(True, True)),  # degrees
        (r"$\boxed{10\%}$", "10", Grade(True, True)),
        (r"$\boxed{5\text{ cm}}$", "5", Grade(True, True)),  # units in \text{}
        (r"$\boxed{[1,2)}$", r"[1,2)", Grade(True, True)),  # intervals
        (r"$\boxed{(1,2)}$", r"[1,2)", Grade(False, True)),
        (r"$\boxed{x \in [2,5)}$", r"[2,5)", Grade(True, True)),
        (r"$\boxed{(x+1)^2}$", r"x^2+2x+1", Grade(True, True)),  # equivalent expressions
        (r"$\boxed{(x+1)^2}$", r"x^2+1", Grade(False, True)),
        (r"$\boxed{\frac{2}{3}}$", r"\frac{1}{2}", Grade(False, True)),
        (_TWO_BOXES, "4", Grade(True, True)),  # the last box counts
        (_TWO_BOXES, "3", Grade(False, True)),
        # Boxes close together and separated by "and" or a comma are one answer (math-verify's rule).
        (r"so $x = \boxed{2}$ and $x = \boxed{3}$", r"2, 3", Grade(True, True)),
        (r"$\boxed{1}$, $\boxed{2}$, and $\boxed{4}$", r"1, 2, 4", Grade(True, True)),
        # A boxed guess the text then rejects is not part of the answer it commits to.
        (r"First try: \boxed{5}. That is wrong; redoing it gives \boxed{7}", "7", Grade(True, True)),
        (r"First try: \boxed{5}. That is wrong; redoing it gives \boxed{7}", "5, 7", Grade(False, True)),
        (r"so the answer is $\boxed 9$.", "9", Grade(True, True)),  # MATH's unbraced box
        ("The answer is: 12", "12", Grade(True, True)),  # no box: MetaMathQA's closing line
        ("the sum is 12", "12", Grade(False, False)),  # no box, no anchor: unparseable
        (r"so $\boxed{12", "12", Grade(False, False)),  # unclosed box
        (r"so there are $\boxed{}$ primes", "0", Grade(False, False)),  # empty box
    ],
)
def test_math_rule(completion, reference, expected):
    assert grade(completion, reference, "math") == expected


def test_reference_answer_extracts_the_final_answer():
    gsm = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72.\n#### 72"
    assert reference_answer(gsm, "gsm8k") == "72"
    assert reference_answer("Total: 1,080 cents.\n#### 1,080", "gsm8k") == "1,080"
    math = r"Then $\frac{a}{b} = \frac{\sqrt{2}}{\left(1+\frac{1}{2}\right)}$, so $\boxed{\frac{\sqrt{2}}{3}}$ hence."
    assert reference_answer(math, "math") == r"\frac{\sqrt{2}}{3}"
    assert reference_answer("no final answer here", "math") is None
    assert reference_answer("no final answer here", "gsm8k") is None
    assert extract_answer("#### 3 cats\nDone.", "embedded") == "3 cats"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown grading task"):
        is_correct("#### 1", "1", "gsm9k")
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        grade_many(["#### 1", "#### 2"], ["1"], "gsm8k")


def test_grade_many_matches_single_calls_and_is_correct():
    completions = ["#### 5", "The answer is 6", "no answer", "#### 5.00"]
    references = ["5", "7", "5", "5"]
    expected = [Grade(True, True), Grade(False, True), Grade(False, False), Grade(True, True)]
    assert grade_many(completions, references, "gsm8k") == expected
    assert [is_correct(c, r, "gsm8k") for c, r in zip(completions, references)] == [g.correct for g in expected]


def _in_thread(fn):
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as err:  # surfaced in the test thread below
            out["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=120)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_grading_works_off_the_main_thread():
    # Pairs no other test grades, so the verdicts cannot come from this process's cache.
    completions = [r"$\boxed{\dfrac{7}{8}}$", r"$\boxed{0.875}$", r"$\boxed{\frac{7}{9}}$", "nothing"]
    references = [r"\frac{14}{16}", r"\frac{14}{16}", r"\frac{14}{16}", r"\frac{14}{16}"]
    got = _in_thread(lambda: grade_many(completions, references, "math"))
    assert got == [Grade(True, True), Grade(True, True), Grade(False, True), Grade(False, False)]
    assert _in_thread(lambda: is_correct("#### 2,718", "2718", "gsm8k")) is True


def test_pathological_answer_is_cut_by_the_timeout_off_the_main_thread():
    # A power tower sympy cannot compare in reasonable time: it must be graded wrong, not hang.
    start = time.perf_counter()
    got = _in_thread(lambda: grade(r"$\boxed{9^{9^{9^{9}}}}$", "5", "math"))
    assert got == Grade(False, True)
    assert time.perf_counter() - start < 60


def test_a_helper_stuck_past_its_deadline_is_replaced(monkeypatch):
    # With a 1 s deadline, the power tower (cut by the helper's own 3 s alarm) overruns: the
    # helper is killed, that pair graded wrong, and the next pair graded by a fresh helper.
    from loop import grading

    monkeypatch.setattr(grading._HELPER, "PAIR_LIMIT_S", 1)
    got = _in_thread(lambda: grade_many([r"$\boxed{9^{9^{9^{8}}}}$", r"$\boxed{\frac{6}{8}}$"], ["4", "0.75"], "math"))
    assert got == [Grade(False, True), Grade(True, True)]
