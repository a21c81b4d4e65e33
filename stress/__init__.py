"""Stress and fault harness: randomized ADD/CHECK/DEL under kill -9, then a runtime-like sweep and invariant checks.

Run it as `.venv/bin/python -m stress [--ops N] [--workers W] [--kill-rate R] [--bin-dir DIR] [--report PATH]`
(as root).  Everything it creates lives in network namespaces it makes with
conformance.netenv.Netns and deletes, even when interrupted.  docs/reliability.md
describes what it checks and the figures of a full run.
"""
