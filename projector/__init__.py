"""Campaign analytics projector: folds dispatch events from Kafka into DuckDB."""

__version__ = "0.1.0"
