"""Data sources: GSM8K, MATH, any Hugging Face dataset or a user's JSONL/Parquet/CSV file, each
returned as the Examples frame of `loop.schema` (plus `_file`/`_line`/`_error` provenance columns
that `loop.validation.validate_examples` reads and drops), and linking of pool items to seeds.
"""

from loop.sources.files import ColumnMapping, load_file, read_table
from loop.sources.hub import SourceUnavailableError, load_gsm8k, load_hf, load_math
from loop.sources.linking import link_by_question, link_pool, link_to_nearest_seed

__all__ = [
    "ColumnMapping",
    "SourceUnavailableError",
    "link_by_question",
    "link_pool",
    "link_to_nearest_seed",
    "load_file",
    "load_gsm8k",
    "load_hf",
    "load_math",
    "read_table",
]
