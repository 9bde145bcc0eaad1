"""The end-to-end tests' fixtures (tests/e2e/servers.py)."""

from tests.e2e.servers import prefect_env  # noqa: F401  (a fixture)
