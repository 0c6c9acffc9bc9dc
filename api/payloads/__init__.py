"""API payloads built from projection rows: pure functions, rows in, JSON-ready dicts out.

Imports ``projector.fold`` rows only: no I/O, no DuckDB.
"""
