"""The refactoring guard: a preset rerun now computes the same tables as the stored reference, to the last bit on a
CPU like the one that wrote it (accuracies, selections, signals, scores, the dynamics ledger; `tests/reference/tables.py`
says what is left out and why). On another CPU or torch (`machine.json`), floats agree within float32 rounding and
everything else exactly. The reference is rewritten only on purpose: `python -m tests.reference.run CASE --regenerate`.

smoke and smoke-paths run in the suite; default (about 5 minutes on 2 cores) only with
CURATION_LOOP_REFERENCE_DEFAULT=1."""

import os

import pytest

from tests.reference.run import compare, run_case

pytestmark = pytest.mark.integration

CASES = ["smoke", "smoke-paths",
         pytest.param("default", marks=pytest.mark.skipif(
             os.environ.get("CURATION_LOOP_REFERENCE_DEFAULT") != "1",
             reason="about 5 minutes: set CURATION_LOOP_REFERENCE_DEFAULT=1"))]


@pytest.mark.parametrize("case", CASES)
def test_a_rerun_computes_the_stored_reference(case, tmp_path):
    how, found = compare(case, run_case(case, tmp_path / case))
    assert not found, f"{case} differs from tests/reference/{case}/, compared {how}: " + "; ".join(found)
