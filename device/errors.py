"""The one base class for mistakes a user can make, and how any error becomes one line of text."""


class UserError(Exception):
    """Bad input from the user (a file, a folder, an option); `str()` is a one-line explanation."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as one short line: library and driver messages often span several, or run long."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
