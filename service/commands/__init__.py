"""The ``projector`` subcommands, one module each: options beside the handler (``base``).

Handlers may import everything below (projector, api, schemas), inside the handler.
"""
