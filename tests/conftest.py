"""Shared fixtures: `harness` (the in-memory API harness of tests/apiharness.py)."""

from apiharness import harness

__all__ = ["harness"]
