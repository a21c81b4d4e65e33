"""The repository's tests share the conformance suite's fixtures and its root-namespace guard."""
pytest_plugins = ["conformance.fixtures"]
