"""Rebuilding projections beside the live service: replay from Kafka or the archive,
the archive itself, and the blue/green swap of a running server's database.

Imports ``projector.intake`` (Kafka helpers) and below; never tools, api or service.
"""
