"""The end-to-end tests' fixtures (tests/e2e/servers.py)."""

from tests.e2e.servers import postgres_url, prefect_env, ray_cluster  # noqa: F401  (fixtures)
