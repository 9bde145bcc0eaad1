"""Test-wide settings: offline first, before anything imports an HF library; a private Prefect home."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"  # a stray download fails fast instead of hanging
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="curation-loop-prefect-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

pytest_plugins = ["tests.models"]  # tiny model fixtures for the integration and GPU tests
