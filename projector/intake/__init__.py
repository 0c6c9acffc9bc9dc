"""Kafka in: the faust worker, the micro-batch pipeline, offsets and log marks, topics,
dead letters, cluster membership (who owns which partition) and the shards that follow
it (``placement``), and what the API may
watch of it (health, metrics, the change feed).

Imports ``projector.store`` and below; never rebuild, tools or api.
"""
