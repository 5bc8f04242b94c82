"""Exception types users can catch; every message names the file, key or field at fault."""


class ActPolicyError(Exception):
    """Base class for all errors raised by act_policy."""


class CheckpointError(ActPolicyError):
    """A checkpoint or deploy bundle is missing, malformed or inconsistent."""


class ObservationError(ActPolicyError, ValueError):
    """An observation does not match what the policy was trained on."""


class BackendError(ActPolicyError):
    """A backend is unknown, unavailable, or failed at run time."""


class BackendOptionsError(BackendError):
    """Backend options (``BackendOptions.extra``) that the chosen backend does not take."""


class MissingDependencyError(ActPolicyError, ImportError):
    """An optional package is not installed; the message says what needs it and what to install."""


class SettingError(ActPolicyError, ValueError):
    """A setting the caller chose (an argument, CLI flag or node parameter) is invalid for this policy."""
