"""Running a command-line script: a user error prints one line and exits with status 2.

Example (the end of a script in ``tools/`` or ``examples/``):
    >>> if __name__ == "__main__":
    ...     run_main(main)
"""

import sys
import warnings

from keras_fcn import io

# What a user can cause and fix: a bad flag value, a missing input, an existing output (or
# one another process writes: io.DirectoryLockedError), a full disk.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, io.DiskFullError)
USER_ERROR_STATUS = 2


def run_main(main, argv=None):
    """``absl.app.run(main)``, except that a user error prints ``error: <message>`` on stderr,
    without a traceback, and exits with status 2, and absl/TensorFlow INFO logging is off
    unless ``--verbosity`` is given.

    Args:
        main: the script's ``main(argv)``.
        argv: command line (default ``sys.argv``).

    Example:
        run_main(lambda argv: train.run(train.config_from_flags()))
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


def define_deprecated_alias(old, new, flag_values=None):
    """Defines ``--old`` as a deprecated name of the flag ``--new``: a value given as ``--old``
    sets ``--new`` and warns (a ``FutureWarning``: the user of a script sees it).

    Args:
        old: the old flag name (e.g. the 0.1.0 ``run_dir`` of the NYUDv2 recipe).
        new: the name of the defined flag it now means (e.g. ``output_dir``).
        flag_values: the ``absl.flags.FlagValues`` (default the global ``FLAGS``).

    Example:
        define_deprecated_alias("run_dir", "output_dir")
    """
    from absl import flags

    values = flags.FLAGS if flag_values is None else flag_values
    flags.DEFINE_alias(old, new, flag_values=values)
    values[old].help = f"Deprecated: use --{new}."

    def warn_if_given(value):
        if values[old].present:
            warnings.warn(f"--{old} is deprecated: use --{new}. Received: --{old}={value}",
                          FutureWarning, stacklevel=2)
        return True

    flags.register_validator(old, warn_if_given, flag_values=values)
