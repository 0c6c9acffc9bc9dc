"""The composition root: the ``projector`` command line and ``serve``, the only place
that wires ``projector`` and ``api`` together.

May import everything; nothing imports it.
"""
