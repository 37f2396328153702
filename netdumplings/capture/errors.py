"""The one error every capture source raises: a capture that cannot be opened or read on,
said in a message for the user (the CLI shows it without a traceback)."""


class CaptureError(Exception):
    """A capture cannot be opened or read on (clear message for the user, no traceback)."""
