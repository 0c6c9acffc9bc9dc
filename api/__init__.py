"""The HTTP API: the app factory, dependencies, routes, the read store and payload builders.

Imports ``projector`` (rows, tables and the store's read helpers; from intake only
health, metrics and the change feed) and ``schemas``; never intake internals or service.
"""
