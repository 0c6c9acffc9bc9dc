"""The only DuckDB writer: tables, the flush transaction, row cache, set-based fold and merge.

Also the writer's memory for the API (heads, runs), the invariant check and verify,
and the shards: a store per partition in a data directory (``shards``).
Imports ``projector.fold``, ``projector.settings``/``errors`` and ``schemas``; never
intake, rebuild, tools or api.
"""
