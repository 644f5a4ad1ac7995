"""Thin entry points: CLI, worker, API."""
