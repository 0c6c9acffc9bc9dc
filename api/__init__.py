"""The HTTP API: app factory, dependencies, answers, routes, read store, payload builders.

Imports ``projector`` (rows, tables and the store's read helpers; from intake only
health, metrics and the change feed) and ``schemas``; never intake internals or service.
"""
