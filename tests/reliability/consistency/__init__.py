"""Polled answers against the database under load: the serve composition in one process,
pollers that check every answer, and a real-process poller through restarts and swaps."""
