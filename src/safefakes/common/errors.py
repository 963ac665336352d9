"""The one exception type the command line turns into a one-line error message."""


class SafefakesError(Exception):
    """A user-facing error: bad input, a missing file, an impossible request.

    The command line prints ``error: <message>`` on one line and exits with status 1.
    """
