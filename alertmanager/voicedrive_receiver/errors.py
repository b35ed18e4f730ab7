"""Exceptions of the receiver.

ReceiverError (VoiceDriveError)
 ├── PayloadError       a webhook body is not a valid Alertmanager v4 payload; ``field`` names where
 └── StoreUnavailable   the store cannot be reached or written now (the webhook answers 503)
      └── StoreRejected  the store refuses this data for good (a retry cannot succeed)
"""

from voicedrive_common.errors import VoiceDriveError


class ReceiverError(VoiceDriveError):
    """Root of the receiver's own exceptions."""


class PayloadError(ReceiverError):
    """The webhook body is malformed; ``field`` is the JSON path of the problem."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class StoreUnavailable(ReceiverError):
    """The store did not accept the operation; the caller may retry later."""


class StoreRejected(StoreUnavailable):
    """The store refused the data itself (e.g. past a PostgreSQL size limit), not the moment.

    A StoreUnavailable, so every caller that retries later still does; the journal processor
    instead keeps the notification as failed rather than retrying it forever.
    """
