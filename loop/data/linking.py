"""Link pool items to the seed they were derived from: by the seed's question text when the pool
names it (MetaMathQA's `original_question`), else by the nearest seed question under TF-IDF
(or LSA embeddings: TF-IDF reduced by truncated SVD), both with scikit-learn.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

METHODS = ("tfidf", "lsa")
LSA_DIMS = 128
# Rows of pool x seed similarities computed at once: bounds memory to batch x n_seeds floats.
BATCH_ROWS = 1024


def normalize_question(expr: pl.Expr) -> pl.Expr:
    """Lower-case, whitespace collapsed and stripped: the key for "same question" matching."""
    return expr.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def question_vectors(
    a: list[str], b: list[str], method: str = "tfidf", seed: int = 0
) -> tuple[sparse.csr_matrix | np.ndarray, sparse.csr_matrix | np.ndarray]:
    """L2-normalised vectors of two lists of questions in one shared space (dot = cosine).

    tfidf: word unigrams and bigrams, numbers and one-letter symbols kept as tokens (they carry
    much of a math question). lsa: the same TF-IDF (terms of two or more questions) reduced to
    `LSA_DIMS` dimensions by truncated SVD.
    """
    if method not in METHODS:
        raise ValueError(f"unknown linking method {method!r}; expected one of {METHODS}")
    # For LSA, terms of a single question are dropped: they link nothing and slow the SVD ~10x.
    vectorizer = TfidfVectorizer(
        token_pattern=r"(?u)\b\w+\b",
        ngram_range=(1, 2),
        sublinear_tf=True,
        min_df=2 if method == "lsa" and len(a) + len(b) > 100 else 1,
    )
    x = vectorizer.fit_transform([q or "" for q in a + b]).tocsr()
    if method == "lsa":
        dims = max(1, min(LSA_DIMS, x.shape[1] - 1, x.shape[0] - 1))
        x = normalize(TruncatedSVD(n_components=dims, random_state=seed).fit_transform(x))
    return x[: len(a)], x[len(a) :]


def link_by_question(pool: pl.DataFrame, seeds: pl.DataFrame) -> pl.DataFrame:
    """Fill a null `seed_id` from the seed whose question equals the row's `seed_question`.

    Reads pool columns seed_id, seed_question (a no-op without it) and seeds columns id,
    question; equality is on `normalize_question`. Rows whose seed question matches no seed keep
    a null seed_id. When two seeds share a question, the first in `seeds` order wins.
    """
    if "seed_question" not in pool.columns:
        return pool
    keys = (
        seeds.select(_key=normalize_question(pl.col("question")), _seed=pl.col("id"))
        .filter(pl.col("_key").is_not_null())
        .unique("_key", keep="first", maintain_order=True)
    )
    joined = pool.with_columns(_key=normalize_question(pl.col("seed_question"))).join(
        keys, on="_key", how="left", maintain_order="left"
    )
    return joined.with_columns(seed_id=pl.coalesce("seed_id", "_seed")).drop("_key", "_seed")


def link_to_nearest_seed(
    pool: pl.DataFrame, seeds: pl.DataFrame, method: str = "tfidf"
) -> pl.DataFrame:
    """Link each pool row with a null `seed_id` to the seed with the most similar question.

    Reads pool columns question, seed_id and seeds columns id, question. Writes seed_id (only
    where it was null) and link_similarity (Float64 cosine in [0, 1] for the rows linked here,
    null for rows that were already linked). A question sharing no term with any seed keeps a
    null seed_id, with similarity 0. method: "tfidf" or "lsa" (see `question_vectors`).
    Ties go to the first seed in `seeds` order.
    """
    if "link_similarity" not in pool.columns:
        pool = pool.with_columns(link_similarity=pl.lit(None, dtype=pl.Float64))
    todo = pool["seed_id"].is_null()
    if not todo.any() or seeds.height == 0:
        return pool
    rows = np.flatnonzero(todo.to_numpy())
    questions = pool["question"].to_list()
    p_vec, s_vec = question_vectors([questions[i] for i in rows], seeds["question"].to_list(), method)
    best = np.empty(len(rows), dtype=np.int64)
    sim = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), BATCH_ROWS):
        block = p_vec[start : start + BATCH_ROWS] @ s_vec.T
        block = block.toarray() if sparse.issparse(block) else np.asarray(block)
        best[start : start + len(block)] = block.argmax(axis=1)
        sim[start : start + len(block)] = block.max(axis=1)
    seed_ids = np.asarray(seeds["id"].to_list(), dtype=object)
    new_id = pool["seed_id"].to_list()
    new_sim = pool["link_similarity"].to_list()
    for k, i in enumerate(rows):
        # A question sharing no term with any seed stays unlinked rather than tied to seed 0.
        new_id[i] = seed_ids[best[k]] if sim[k] > 0 else None
        new_sim[i] = float(np.clip(sim[k], 0.0, 1.0))
    return pool.with_columns(
        seed_id=pl.Series(new_id, dtype=pl.String), link_similarity=pl.Series(new_sim, dtype=pl.Float64)
    )


def link_pool(pool: pl.DataFrame, seeds: pl.DataFrame, method: str | None = "tfidf") -> pl.DataFrame:
    """Link a pool to its seeds: by named seed question first, then (method not None) by nearest
    question. Reads/writes the columns of `link_by_question` and `link_to_nearest_seed`."""
    pool = link_by_question(pool, seeds)
    return link_to_nearest_seed(pool, seeds, method) if method else pool
