"""Benchmarks (a package so that benchmarks/conftest.py is not imported as a top-level
``conftest`` module, which tests/ imports by that name)."""
