"""The one exception that cortex shows to its users."""


class CortexError(Exception):
    """An error displayed to the user as one line; the CLI exits with code 1.

    Library code raises it with what went wrong (with the offending value) and
    what to do next; it never exits the process itself.
    """
