"""The exception that cortex shows to its users (and its not-found kind), and how a wrapped exception becomes part of its line."""


class CortexError(Exception):
    """An error displayed to the user as one line; the CLI exits with code 1.

    Library code raises it with what went wrong (with the offending value) and
    what to do next; it never exits the process itself.
    """


class NotFound(CortexError):
    """A CortexError naming a stored thing (an image id, an upload, a job) that does not exist: HTTP 404 in `cortex serve`."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, else its type name: how a cause joins a CortexError's line."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
