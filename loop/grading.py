"""Final-answer grading of completions against reference answers, one rule per task.

Tasks:
    embedded  the text after the last "#### ", cut at "\\nDone.", stripped; exact string match.
    gsm8k     the text after the last "####" or "The answer is" (to the end of that line);
              compared by math-verify, so commas, dollar signs, trailing units and 18.00 == 18
              are handled by the library, not by rules of ours.
    math      the content of the last \\boxed{} (nested braces), else the text after the last
              "The answer is" (MetaMathQA-style solutions); compared by math-verify (fractions,
              \\dfrac, \\text{}, degrees, intervals, equivalent expressions).
Output with no final answer is unparseable and wrong; `grade_many` returns `Grade(correct, parsed)`
so callers can count the two apart.

Cost: extraction is a regex; math-verify runs once per distinct (reference, answer) pair and the
verdict is cached, because samples of one question repeat the same few answers.

Threads: math-verify bounds each parse/verify with SIGALRM, which Python allows on the main thread
only (elsewhere math-verify raises ValueError). Prefect runs tasks in worker threads, so off the
main thread the math-verify calls go to one helper process (`python -m loop.grading`), whose main
thread can set the alarm. A helper that overruns even that limit is killed and the pair graded
wrong, so one pathological answer never stalls a round.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TASKS = ("embedded", "gsm8k", "math")
# Seconds allowed to each math-verify parse or verify call (signal.alarm takes whole seconds).
MATH_VERIFY_TIMEOUT_S = 3
# Verdict cache size: (task, reference, answer) -> bool.
_CACHE_MAX = 200_000

_ANSWER_IS = re.compile(r"the answer is\s*:?", re.IGNORECASE)
_GSM8K_ANCHOR = re.compile(r"####|the answer is\s*:?", re.IGNORECASE)


@dataclass(frozen=True)
class Grade:
    """Outcome of grading one completion: `parsed` is False when no final answer was found."""

    correct: bool
    parsed: bool


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown grading task {task!r}; expected one of {TASKS}")


def _rest_of_line(text: str, start: int) -> str | None:
    """The text from `start` to the end of its line, stripped, with a final period dropped."""
    end = text.find("\n", start)
    span = text[start:] if end < 0 else text[start:end]
    span = span.strip().removesuffix(".").strip()
    return span or None


_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# What may stand between two boxes of one list: a comma or "and" (math delimiters and a restated "x =" around it),
# nothing else: "\boxed{2}$ and $x = \boxed{3}" is one answer, "\boxed{5} is wrong ... \boxed{7}" is not.
_LIST_GAP = re.compile(r"\s*\$?\s*(?:,\s*and\b|,|\band\b)\s*\$?\s*(?:[A-Za-z]\w*\s*=\s*)?\$?\s*\Z")


_BARE_BOX = re.compile(r"\\(?:boxed|fbox) +([^\s${}]+)")  # "\\boxed 2", as some MATH solutions write it


def _boxes(text: str) -> list[tuple[int, int, str | None]]:
    """Every \\boxed{...} / \\fbox{...} (and "\\boxed 2"), in order: (start, end, content), content None where its
    braces never close."""
    out = []
    for match in _BOX.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append((match.start(), i, text[match.end():i - 1].strip() if depth == 0 else None))
    out += [(m.start(), m.end(), m.group(1).removesuffix(".")) for m in _BARE_BOX.finditer(text)]
    return sorted(out)


def _last_boxed(text: str) -> str | None:
    """The answer the text's boxes commit to: the last \\boxed{} (or \\fbox{}) content, joined with the boxes just
    before it that form one list with it (separated only by a comma or "and": "\\boxed{2} and \\boxed{3}" -> "2,3");
    an earlier box followed by other text (a rejected guess) is not part of it. None when the last box is empty or
    unclosed."""
    boxes = [b for b in _boxes(text) if not any(b[0] > o[0] and b[1] <= o[1] for o in _boxes(text))]  # outermost
    if not boxes or not boxes[-1][2]:
        return None
    run = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if box[2] is None or not _LIST_GAP.match(text[box[1]:run[0][0]]):
            break
        run.insert(0, box)
    return ",".join(b[2] for b in run)


def extract_answer(completion: str, task: str) -> str | None:
    """The final-answer text of a completion, or None when it has none (unparseable).

    embedded: after the last "#### ", cut at "\\nDone.", stripped. gsm8k: the rest of the line
    after the last "####" or "The answer is". math: the last \\boxed{} content (boxes just before
    it, separated only by "and" or a comma, join it: "2,3", as math-verify reads multi-part answers;
    a box followed by other text, a guess the solution then rejects, does not), else the rest of
    the line after the last "The answer is". The text is returned as written;
    equivalence (1,000 == 1000, \\dfrac{1}{2} == 0.5) is math-verify's job in `grade_many`.
    """
    _check_task(task)
    if task == "embedded":
        _, sep, tail = completion.rpartition("#### ")
        if not sep:
            return None
        return tail.split("\nDone.", 1)[0].strip() or None
    if task == "gsm8k":
        anchors = list(_GSM8K_ANCHOR.finditer(completion))
        return _rest_of_line(completion, anchors[-1].end()) if anchors else None
    if "\\boxed" in completion or "\\fbox" in completion:
        # A box, even an empty or unclosed one, is the answer the text commits to.
        return _last_boxed(completion)
    anchors = list(_ANSWER_IS.finditer(completion))
    return _rest_of_line(completion, anchors[-1].end()) if anchors else None


def reference_answer(solution: str, task: str) -> str | None:
    """The final answer of a reference solution (GSM8K "#### n", MATH last \\boxed{}), or None.

    Same rules as `extract_answer`: a reference solution is graded like a perfect completion.
    """
    return extract_answer(solution, task)


# --- math-verify, in this process ----------------------------------------------------------


def _silence_math_verify() -> None:
    # Timeouts are expected on pathological answers and are graded wrong; no log line per sample.
    logging.getLogger("math_verify").setLevel(logging.ERROR)


@lru_cache(maxsize=65_536)
def _parse(text: str, task: str) -> tuple:
    """math-verify parse of an extracted answer; () when math-verify finds nothing in it."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    if task == "math":
        # Re-boxing makes math-verify read the whole answer as one LaTeX expression.
        target, config = f"\\boxed{{{text}}}", [LatexExtractionConfig(boxed_match_priority=0)]
    else:
        target, config = text, [LatexExtractionConfig(), ExprExtractionConfig()]
    return tuple(parse(target, config, parsing_timeout=MATH_VERIFY_TIMEOUT_S))


def _verify_local(task: str, reference: str, answer: str) -> bool:
    """math-verify equivalence of two answer texts; must run on the main thread (SIGALRM)."""
    from math_verify import verify

    gold, pred = _parse(reference, task), _parse(answer, task)
    if not gold or not pred:
        return False
    return bool(verify(list(gold), list(pred), timeout_seconds=MATH_VERIFY_TIMEOUT_S))


# --- math-verify, in the helper process (for callers off the main thread) --------------------


class _Helper:
    """One `python -m loop.grading` process: reads a JSON line [task, [[ref, ans], ...]] and
    answers one byte per pair ("1" correct, "0" wrong) as soon as each is graded, so the parent
    can hold each pair to its own deadline."""

    # Worst case per pair inside the helper: two parses and one verify, each cut at the timeout.
    PAIR_LIMIT_S = 3 * MATH_VERIFY_TIMEOUT_S + 10

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def _running(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ)
            # The helper imports this package from where this file lives, installed or not.
            root = str(Path(__file__).resolve().parents[1])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "loop.grading"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
            )
        return self._proc

    def _died(self) -> RuntimeError:
        # A helper that dies is a broken install, not a wrong answer: never grade it wrong.
        code = self._proc.wait() if self._proc else None
        self._proc = None
        return RuntimeError(f"the grading helper process (python -m loop.grading) exited with code {code}")

    def verdicts(self, task: str, pairs: list[tuple[str, str]]) -> list[bool]:
        out: list[bool] = []
        with self._lock:
            while len(out) < len(pairs):
                proc = self._running()
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    proc.stdin.write((json.dumps([task, pairs[len(out) :]]) + "\n").encode())
                    proc.stdin.flush()
                except OSError as err:  # BrokenPipeError
                    raise self._died() from err
                fd = proc.stdout.fileno()
                sent = len(pairs)
                while len(out) < sent:
                    ready, _, _ = select.select([fd], [], [], self.PAIR_LIMIT_S)
                    if not ready:
                        # Stuck past the alarm (a computation Python cannot interrupt): kill the
                        # helper, grade this pair wrong, send the rest to a fresh helper.
                        proc.kill()
                        proc.wait()
                        self._proc = None
                        out.append(False)
                        break
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise self._died()
                    out.extend(b == ord("1") for b in chunk)
        return out


_HELPER = _Helper()


def _helper_main() -> None:
    _silence_math_verify()
    for line in sys.stdin:
        task, pairs = json.loads(line)
        for ref, ans in pairs:
            sys.stdout.buffer.write(b"1" if _verify_local(task, ref, ans) else b"0")
            sys.stdout.buffer.flush()


# --- public grading ---------------------------------------------------------------------------

_VERDICTS: dict[tuple[str, str, str], bool] = {}


def _verdicts(task: str, pairs: list[tuple[str, str]]) -> list[bool]:
    """math-verify verdicts for distinct (reference, answer) pairs, from cache where possible."""
    todo = sorted({p for p in pairs if (task, *p) not in _VERDICTS})
    if todo:
        if threading.current_thread() is threading.main_thread():
            _silence_math_verify()
            fresh = [_verify_local(task, ref, ans) for ref, ans in todo]
        else:
            fresh = _HELPER.verdicts(task, todo)
        if len(_VERDICTS) + len(todo) > _CACHE_MAX:
            _VERDICTS.clear()
        _VERDICTS.update({(task, *p): v for p, v in zip(todo, fresh, strict=True)})
    return [_VERDICTS[(task, *p)] for p in pairs]


def grade_many(completions: Sequence[str], references: Sequence[str], task: str) -> list[Grade]:
    """Grade completions against reference answers (as `reference_answer` returns them).

    Batch form of `is_correct`: one math-verify call per distinct (reference, answer) pair, and,
    off the main thread, one request to the helper process for the whole batch. Prefer it to a
    loop of `is_correct` calls when grading the samples of a round.
    """
    _check_task(task)
    if len(completions) != len(references):
        raise ValueError(
            f"grade_many got {len(completions)} completions but {len(references)} references"
        )
    answers = [extract_answer(c, task) for c in completions]
    if task == "embedded":
        return [
            Grade(correct=a is not None and a == r.strip(), parsed=a is not None)
            for a, r in zip(answers, references)
        ]
    pairs = [(r.strip(), a) for a, r in zip(answers, references) if a is not None]
    verdicts = iter(_verdicts(task, pairs))
    return [
        Grade(correct=next(verdicts), parsed=True) if a is not None else Grade(False, False)
        for a in answers
    ]


def grade(completion: str, reference_answer: str, task: str) -> Grade:
    """Grade one completion: `Grade(correct, parsed)`; unparseable output is `Grade(False, False)`."""
    return grade_many([completion], [reference_answer], task)[0]


def is_correct(completion: str, reference_answer: str, task: str) -> bool:
    """True when the completion's final answer equals `reference_answer` under the task's rule.

    task: "embedded" (exact string), "gsm8k" or "math" (math-verify equivalence). Works on any
    thread. Unparseable output is wrong.
    """
    return grade(completion, reference_answer, task).correct


if __name__ == "__main__":
    _helper_main()
