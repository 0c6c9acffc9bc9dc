"""Around the projector: the producer SDK (``emit``), produce, simulate, the embedded
broker and the demo.

Imports ``projector.intake`` (topics) and below; never rebuild, api or service.
"""
