"""The operator CLI, as the plugin table knows it (common/plugins.py; constants only)."""

TYPES = ("cni-suite",)
KIND = "cli"  # run as `python -m cni_suite` (its __main__), or `cni-multi cni-suite`
MAIN = "cni_suite.cli:main"
