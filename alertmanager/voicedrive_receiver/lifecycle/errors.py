"""Exceptions of the lifecycle modules.

LifecycleError (VoiceDriveError)
 ├── ScheduleError      the schedule cannot answer the question (e.g. an open-ended span)
 ├── TransitionError    an operation does not fit the incident's state (the API answers 409)
 └── RecordFieldError   a record update names an unknown field or carries a bad value
"""

from voicedrive_common.errors import VoiceDriveError


class LifecycleError(VoiceDriveError):
    """Root of the lifecycle modules' own exceptions."""
