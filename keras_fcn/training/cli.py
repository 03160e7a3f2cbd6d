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
    without a traceback, and exits with status 2, and absl/TensorFlow INFO logging is off
    unless ``--verbosity`` is given.

    Args:
        main: the script's ``main(argv)``.
        argv: command line (default ``sys.argv``).

    Example:
        >>> run_main(lambda argv: train.run(train.config_from_flags()))
    """
    from absl import app, flags, logging

    def guarded(args):
        # TensorFlow's INFO lines (SavedModel assets, signatures) are not the script's output;
        # --verbosity=0 brings them back.
        if "verbosity" in flags.FLAGS and not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            return main(args)
        except USER_ERRORS as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            sys.exit(USER_ERROR_STATUS)

    app.run(guarded, argv=argv)
