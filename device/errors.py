"""The one base class for mistakes a user can make: the CLIs print these as one line, no traceback."""


class UserError(Exception):
    """Bad input from the user (a file, a folder, an option); `str()` is a one-line explanation."""
