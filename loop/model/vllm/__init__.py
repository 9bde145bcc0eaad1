"""The vLLM backend: a server in its own environment (server.py), its sampler and scorer (client.py), and the
backend that makes it serve each checkpoint the loop measures (backend.py)."""
