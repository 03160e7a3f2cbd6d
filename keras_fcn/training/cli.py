"""Running a command-line script: a user error prints one line and exits with status 2.

Example (the end of a script in ``tools/`` or ``examples/``):
    >>> if __name__ == "__main__":
    ...     run_main(main)
"""

import sys

# What a user can cause and fix: a bad flag value, a missing input, an existing output.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)
USER_ERROR_STATUS = 2


def run_main(main, argv=None):
    """``absl.app.run(main)``, except that a user error prints ``error: <message>`` on stderr,
    without a traceback, and exits with status 2.

    Args:
        main: the script's ``main(argv)``.
        argv: command line (default ``sys.argv``).

    Example:
        >>> run_main(lambda argv: train.run(train.config_from_flags()))
    """
    from absl import app

    def guarded(args):
        try:
            return main(args)
        except USER_ERRORS as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            sys.exit(USER_ERROR_STATUS)

    app.run(guarded, argv=argv)
