"""The seed/pool/dev-versus-test contamination check: `check_contamination` finds test questions that also appear,
exactly or nearly (TF-IDF cosine), among the other questions; `assert_no_contamination` refuses a run over them, and
`remove_contaminated` drops the overlapping seed/pool rows for a user who opts to. `ContaminatedDataError` is the
refusal under `data.contamination: refuse`."""

from __future__ import annotations

import polars as pl

from loop.data.linking import normalize_question, question_vectors
from loop.data.validation import SHOWN


class ContaminationError(ValueError):
    """Test questions also present (exactly or nearly) among the seed/pool questions."""

    def __init__(self, pairs: pl.DataFrame) -> None:
        self.pairs = pairs
        shown = [
            f"{r['train_id']} ~ {r['test_id']} ({r['kind']}, cosine {r['similarity']:.3f})"
            for r in pairs.head(SHOWN).iter_rows(named=True)
        ]
        more = pairs.height - len(shown)
        super().__init__(
            f"{pairs.height} seed/pool questions overlap the test set:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
            + "\nRemove them from the seed/pool (or the test set) before the run."
        )


# Contamination pairs an error lists in full (the published MATH 1-3 split has 62).
PAIRS_SHOWN = 200


class ContaminatedDataError(ContaminationError):
    """Seed/pool/dev questions repeat test questions and `data.contamination` is `refuse`."""

    def __init__(self, pairs: pl.DataFrame, threshold: float) -> None:
        self.pairs = pairs
        shown = [f"{r['train_id']} ~ {r['test_id']} ({r['kind']}, cosine {r['similarity']:.3f})"
                 for r in pairs.head(PAIRS_SHOWN).iter_rows(named=True)]
        more = pairs.height - len(shown)
        ValueError.__init__(
            self,
            f"{pairs.height} pairs of a seed/pool/dev question and a test question are equal or nearly equal "
            f"(equal after lower-casing, or TF-IDF cosine >= {threshold}):\n  " + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
            + "\nThe run is refused (data.contamination: refuse). Set data.contamination: drop to remove the "
              "seed/pool/dev side of each pair (the count is reported), or data.contamination: allow to keep them.",
        )


def check_contamination(
    train_like: pl.DataFrame, test: pl.DataFrame, near_threshold: float = 0.9
) -> pl.DataFrame:
    """Pairs of (seed/pool, test) questions that are the same or nearly the same.

    Reads column id and question of both frames. exact: equal after lower-casing and collapsing
    whitespace. near: TF-IDF cosine >= near_threshold (word unigrams+bigrams, see
    `loop.data.linking.question_vectors`), not already exact. Returns columns train_id,
    test_id, kind ("exact" | "near"), similarity (Float64), sorted by similarity descending.
    """
    schema = {"train_id": pl.String, "test_id": pl.String, "kind": pl.String, "similarity": pl.Float64}
    if train_like.height == 0 or test.height == 0:
        return pl.DataFrame(schema=schema)
    a = train_like.select("id", _key=normalize_question(pl.col("question")))
    b = test.select("id", _key=normalize_question(pl.col("question")))
    exact = a.join(b, on="_key", suffix="_test").select(
        train_id="id", test_id="id_test", kind=pl.lit("exact"), similarity=pl.lit(1.0)
    )
    x, y = question_vectors(train_like["question"].to_list(), test["question"].to_list(), "tfidf")
    train_ids, test_ids = train_like["id"].to_list(), test["id"].to_list()
    near: list[tuple[str, str, str, float]] = []
    yt = y.T.tocsc()
    for start in range(0, x.shape[0], 1024):
        block = (x[start : start + 1024] @ yt).tocoo()
        hit = block.data >= near_threshold
        for i, j, s in zip(block.row[hit], block.col[hit], block.data[hit]):
            near.append((train_ids[start + i], test_ids[j], "near", float(min(s, 1.0))))
    near_df = pl.DataFrame(near, schema=schema, orient="row").join(
        exact.select("train_id", "test_id"), on=["train_id", "test_id"], how="anti"
    )
    pairs = pl.concat([exact.cast(schema), near_df])
    return pairs.sort(["similarity", "train_id", "test_id"], descending=[True, False, False])


def assert_no_contamination(
    train_like: pl.DataFrame, test: pl.DataFrame, near_threshold: float = 0.9
) -> None:
    """Raise ContaminationError naming the overlapping (seed/pool id, test id) pairs, if any."""
    pairs = check_contamination(train_like, test, near_threshold)
    if pairs.height:
        raise ContaminationError(pairs)


def remove_contaminated(
    train_like: pl.DataFrame, test: pl.DataFrame, near_threshold: float = 0.9
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Drop the seed/pool rows that overlap the test set; return (kept rows, overlapping pairs).

    For users who choose to run on data with known overlap (the published MATH train/test split
    has some) instead of being refused: the pairs are returned so the run can record them.
    """
    pairs = check_contamination(train_like, test, near_threshold)
    return train_like.filter(~pl.col("id").is_in(pairs["train_id"].unique().to_list())), pairs
