"""Running a command-line script: a user error prints one line and exits with status 2.

Example (the end of a script in ``tools/`` or ``examples/``):
    >>> if __name__ == "__main__":
    ...     run_main(main)
"""

import contextlib
import re
import signal
import sys
import warnings

from keras_fcn import _tf, io

# What a user can cause and fix: a bad flag value, a missing or unreadable input, an existing
# or unwritable output (a read-only disk, a folder where a file goes; one another process
# writes: io.DirectoryLockedError), a full disk, a download that needs a network, a part
# built on TensorFlow where it is not installed.
USER_ERRORS = (ValueError, OSError, io.DownloadError, _tf.TensorFlowMissingError)
USER_ERROR_STATUS = 2
_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
# The last "SomeError: message" line of a TensorFlow error: the exception a tf.data function
# (tf.numpy_function, tf.py_function) raised, e.g. a mask value out of range.
_RAISED = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception)): (.+?)\s*$",
                     re.MULTILINE)


def error_message(error):
    """The one line a user sees for ``error``: its message, or for a TensorFlow op error the
    message of the exception raised inside the op (a data-pipeline check), without the
    graph's node names and stack.

    Example:
        >>> error_message(ValueError("bad --epochs"))
        'bad --epochs'
    """
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, tf.errors.OpError):
        text = error.message or str(error)
        raised = [message for kind, message in _RAISED.findall(text)
                  if kind not in ("InvalidArgumentError", "UnknownError")]
        if raised:
            return raised[-1]
        lines = [line for line in text.splitlines() if line.strip()]
        if lines and lines[0].startswith("Graph execution error"):
            # A failed op inside a traced step (model.fit): its message follows the Python
            # stack of where the op was defined ("  File ...").
            lines = [line for line in lines[1:] if not line.startswith((" ", "\t", "Detected "))
                     and line.strip() != "<stack traces unavailable>"]
        line = lines[0] if lines else type(error).__name__
        line = re.sub(r"\{\{function_node [^}]*\}\}|\[\[\{\{node [^}]*\}\}\]\]", "", line)
        # A tf.debugging.Assert: "assertion failed: [message] [value]"
        line = re.sub(r"^assertion failed: \[(.*)\] \[(.*)\]$", r"\1 \2", line.strip())
        line = re.sub(r"^.*Error in user-defined function passed to \S+ transformation with "
                      r"iterator: \S+: ", "reading the data: ", line)
        return line.strip()
    return str(error)


def data_file_message(error):
    """For a TensorFlow error that stopped a file pipeline of `keras_fcn.datasets` on a file
    it cannot decode (its message has no file name): the message naming the file, else None.

    Example:
        >>> data_file_message(ValueError("bad --epochs")) is None
        True
    """
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError) \
            or "keras_fcn.datasets.loader" not in sys.modules:
        return None
    if any(kind not in ("InvalidArgumentError", "UnknownError")
           for kind, _ in _RAISED.findall(error.message or "")):
        return None  # a check of the pipeline raised it: its message names the file
    from keras_fcn.datasets import loader

    return loader.undecodable_file_message(error)


def _user_errors():
    """`USER_ERRORS`, plus TensorFlow's op errors when it is loaded (a data-pipeline check
    fails inside tf.data: a bad mask value, a corrupt image, an image/mask size mismatch)."""
    tf = sys.modules.get("tensorflow")
    return USER_ERRORS + ((tf.errors.OpError,) if tf is not None else ())


INTERRUPTED_STATUS = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C
TERMINATED_STATUS = 143  # 128 + SIGTERM: what `kill` and job schedulers send


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM while a script of `run_main` runs: the same
    unwinding as a Ctrl-C (locks released, partial files removed), and its own message and
    status."""


def _raise_terminated(signum, frame):  # pylint: disable=unused-argument
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds():
    """Within the block, SIGTERM raises `Terminated` where Python's default ends the process
    at once (the run folder's lock left behind, no word said). A handler set by the caller,
    or a call outside the main thread, is left alone."""
    try:
        installed = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        if installed:
            signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        installed = False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fail(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_STATUS)


def _parse_flags(argv):
    """absl's flag parsing, except that a bad flag exits with status 2 (absl's own: 1), and
    ``--help`` with status 0."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _fail(f"{error}. Pass --helpfull to list the flags.")
    except SystemExit as exit_:
        if exit_.code == 1 and any(arg.split("=")[0] in _HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)
        raise


def run_main(main, argv=None, *, positional=False):
    """``absl.app.run(main)``, except that a user error prints ``error: <message>`` on stderr,
    without a traceback, and exits with status 2, and absl/TensorFlow INFO logging is off
    unless ``--verbosity`` is given.

    User errors: a bad flag (an unknown flag, a value of the wrong kind), words that are no
    flag (``--flip false`` would otherwise set --flip and drop "false"; unless
    ``positional``), and `USER_ERRORS` or TensorFlow op errors raised by ``main``. A Ctrl-C
    or a SIGTERM unwinds ``main`` (its locks released, its partial files removed) and prints
    one line; the status is the shell's, 130 or 143.

    Args:
        main: the script's ``main(argv)``.
        argv: command line (default ``sys.argv``).
        positional: the script takes arguments that are not flags (``argv[1:]``).

    Example:
        run_main(lambda argv: train.run(train.config_from_flags()))
    """
    from absl import app, flags, logging

    def guarded(args):
        # TensorFlow's INFO lines (SavedModel assets, signatures) are not the script's output;
        # --verbosity=0 brings them back.
        if "verbosity" in flags.FLAGS and not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        if not positional and len(args) > 1:
            _fail(f"unexpected arguments: {args[1:]} (this script takes only flags; a boolean "
                  "flag is --name, --noname or --name=false)")
        try:
            with _sigterm_unwinds():
                return main(args)
        except _user_errors() as error:
            _fail(data_file_message(error) or error_message(error))
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: one line, not a traceback
            terminated = isinstance(stop, Terminated)
            print(f"{'terminated (SIGTERM)' if terminated else 'interrupted (Ctrl-C)'}: every "
                  "output written so far is complete; run the command again to go on (a "
                  "training run: with --resume)", file=sys.stderr, flush=True)
            sys.exit(TERMINATED_STATUS if terminated else INTERRUPTED_STATUS)

    app.run(guarded, argv=argv, flags_parser=_parse_flags)


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
