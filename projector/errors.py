"""The root of the projector's errors; each subpackage has its own (``store/errors.py``, ...)."""


class ProjectorError(Exception):
    """Root of the projector's own errors."""
