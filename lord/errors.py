"""The one exception type for mistakes a user can make.

The CLI turns a UserError into a single line on stderr and a non-zero exit; anything else is a
programming error and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix: a bad path, name, file or option."""


class Interrupted(UserError):
    """Training stopped by a signal after saving a checkpoint."""

    exit_code = 130
