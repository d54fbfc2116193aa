"""User-facing errors.

Anything a user can cause (bad config, missing data, wrong checkpoint) raises `DCGANError`
with a one-line message that names the problem and the fix. The CLI prints it and exits 2;
library callers can catch it.
"""


class DCGANError(Exception):
    """A problem with the user's input, with a message that says how to fix it."""


class ConfigError(DCGANError):
    """An invalid configuration key or value."""


class DataError(DCGANError):
    """A dataset that is missing, empty or unreadable."""


class CheckpointError(DCGANError):
    """A checkpoint that is missing, corrupt or of another architecture."""
