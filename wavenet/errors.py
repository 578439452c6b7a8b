"""User-facing errors: the data error type and the one-line form every tool prints."""


class DataError(ValueError):
    """A user-facing data problem; str() is one line naming the file/dir and the problem."""


def one_line(e: BaseException) -> str:
    """An exception as one line (whitespace runs collapsed), or its type name if it is empty."""
    return " ".join(str(e).split()) or type(e).__name__
