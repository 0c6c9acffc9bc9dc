"""The pure fold: projection rows and their keys, the rules F1-F12, the in-memory State.

Imports only ``schemas`` and the standard library: no DuckDB, Kafka, faust,
pyarrow, FastAPI, clock or randomness (time comes from the events).
"""
