"""The product's named exceptions; each message says what is wrong and how to fix it."""

from __future__ import annotations


class MaskwatchError(Exception):
    """Base of every error the product raises on purpose."""


class ServiceUnavailable(MaskwatchError):
    """MongoDB or Redis cannot be reached."""


class MissingAsset(MaskwatchError):
    """A model or data file is not in the asset cache, or its checksum is wrong."""


class IllegalTransition(MaskwatchError):
    """A job state change that the state machine forbids."""


class NotFound(MaskwatchError):
    """No such job, file or user (or not visible to the caller)."""


class BadInput(MaskwatchError):
    """The uploaded file cannot be analysed; the message is for the user."""


class Cancelled(MaskwatchError):
    """The user cancelled the job while it ran."""


class RangeNotSatisfiable(MaskwatchError):
    """An HTTP Range header that asks for bytes the file does not have."""
