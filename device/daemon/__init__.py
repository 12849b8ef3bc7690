"""`device run`: live classification from a camera, with an HTTP page, JSON Lines and hot model reload."""


def one_line(error: BaseException) -> str:
    """An exception as one log or error line (driver messages often span several)."""
    return " ".join(str(error).split()) or error.__class__.__name__
