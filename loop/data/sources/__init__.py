"""Data sources: GSM8K, MATH, any Hugging Face dataset or a user's JSONL/Parquet/CSV file, each
returned as the Examples frame of `loop.schema` (plus `_file`/`_line`/`_error` provenance columns
that `loop.data.validation.validate_examples` reads and drops). Linking pool items to seeds is `loop.data.linking`.
"""

from loop.data.sources.files import ColumnMapping, load_file, read_table
from loop.data.sources.hub import SourceUnavailableError, load_gsm8k, load_hf, load_math

__all__ = [
    "ColumnMapping",
    "SourceUnavailableError",
    "load_file",
    "load_gsm8k",
    "load_hf",
    "load_math",
    "read_table",
]
