"""The projector: campaign events from Kafka folded into DuckDB projections, exactly once.

Layers, bottom up: ``fold`` (pure) < ``store`` (DuckDB) < ``intake`` (Kafka in) <
``rebuild`` and ``tools``; ``settings`` and ``errors`` are leaves every layer may
import. Nothing here imports ``api`` or ``service`` (pyproject.toml, import-linter).
"""
