"""Click support shared by the CLIs: one-line errors, and the options every command spells alike.

This is the one core module that imports click; the numerical core never does.
"""

import errno
import functools
import io
import json
import os
import sys
import unicodedata
from pathlib import Path

import click

from inkvoice import __version__
from inkvoice.core.errors import ProjectError


class ProjectCommand(click.Command):
    """A command whose outputs (:class:`OutputFile` options) never replace what it reads.

    Before the command runs, every output is checked against every path it was given to read
    (``click.Path`` arguments and options: the model, the recordings or images, the data
    folder) and against the other outputs: ``--curve-png MODEL`` or ``-o DATA/7/x.wav``
    is a usage error, not a lost model or recording.
    """

    def invoke(self, ctx):
        from inkvoice.core.files import check_not_an_input

        outputs, inputs = [], []
        for param in self.params:
            values = ctx.params.get(param.name)
            values = values if isinstance(values, (list, tuple)) else [values]
            values = [value for value in values if isinstance(value, (str, os.PathLike))]
            if isinstance(param.type, OutputFile):
                outputs += [(param, value) for value in values]
            elif isinstance(param.type, click.Path):
                inputs += values
        for index, (param, path) in enumerate(outputs):
            others = [other for _, other in outputs[:index]]
            try:
                if any(os.path.abspath(path) == os.path.abspath(other) for other in others):
                    raise ProjectError(f"{path} is given for two outputs; give each its own file")
                check_not_an_input(path, inputs)
            except ProjectError as error:
                raise click.BadParameter(str(error), ctx=ctx, param=param) from None
        return super().invoke(ctx)


class ProjectGroup(click.Group):
    """A click group whose commands turn ProjectError into a one-line error and exit code 1.

    Its commands are :class:`ProjectCommand`: their outputs never replace their inputs.
    Other exceptions are bugs and keep their tracebacks.
    """

    command_class = ProjectCommand

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ProjectError as error:
            raise click.ClickException(printable(error)) from None
        except OSError as error:
            # Results that cannot be written (stdout on a full disk or /dev/full, a closed pipe)
            # are the user's situation, not a bug: one line, not a traceback.
            if error.errno not in _WRITE_FAILURES:
                raise
            _discard_pending_output()
            if error.errno == errno.EPIPE:
                ctx.exit(1)
            raise click.ClickException(f"could not write the results ({error.strerror})") from None


def printable(text):
    """``text`` for plain output: control characters (tab, newline, escape sequences, bytes of a
    name that is not UTF-8) shown as escapes, so that a file name cannot forge a line or a column;
    every other character, accented letters among them, as written."""
    return "".join(repr(character)[1:-1] if unicodedata.category(character).startswith("C") else character
                   for character in str(text))


def input_files(inputs, accept, kinds):
    """The files named in ``inputs``, and under each folder named the files ``accept`` takes.

    Every command that takes files reads folders this way: at any depth, in sorted order,
    hidden files (names starting with a dot) skipped. A folder holding none is reported as one
    Error line naming ``kinds`` (e.g. ".wav, .flac or .ogg files"). Returns (paths, whether a
    folder held none).
    """
    paths, empty = [], False
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.rglob("*")
                           if p.is_file() and not p.name.startswith(".") and accept(p))
            if not found:
                click.echo(f"Error: {printable(item)}: the folder holds no {kinds}", err=True)
                empty = True
            paths.extend(found)
        else:
            paths.append(item)
    return paths, empty


_WRITE_FAILURES = {errno.ENOSPC, errno.EFBIG, errno.EPIPE, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _discard_pending_output():
    """Point stdout at /dev/null, so that exiting does not fail again flushing what is left."""
    try:
        handle = os.open(os.devnull, os.O_WRONLY)
        os.dup2(handle, sys.stdout.fileno())
        os.close(handle)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # not a real file (a test runner's capture): nothing is flushed at exit


def json_line(document):
    """``document`` as one line of JSON, which never holds NaN or Infinity (JSON has neither).

    Raises ProjectError instead: an answer that is not a number is no answer, and invalid JSON
    would break whatever reads the output.
    """
    try:
        return json.dumps(document, allow_nan=False)
    except ValueError:
        raise ProjectError("an answer holds NaN or an infinite number, which JSON cannot represent: "
                           "the model file is damaged or out of range") from None


def progress_reporter(total, label, enabled=True):
    """A click progress bar on stderr and the ``progress(n_done)`` callback that advances it.

    Returns ``(bar, callback)``; use the bar as a context manager around the work.
    """
    # sys.stderr is looked up at call time, so click's test runner captures it too.
    bar = click.progressbar(length=total, label=label, file=sys.stderr, hidden=not enabled)
    return bar, bar.update


def version_option(prog_name):
    """``--version``: the installed inkvoice version, the same for every command."""
    return click.version_option(__version__, "--version", prog_name=prog_name)


quiet_option = click.option("--quiet", is_flag=True, help="No progress bars or progress messages.")


def extraction_options(command):
    """``--jobs``, ``--cache/--no-cache``, ``--scheduler`` and ``--send-files`` for a command over many files.

    The command receives them as one ``extraction`` argument, an
    :class:`inkvoice.core.extraction.ExtractionSettings`.
    """

    @click.option("--jobs", type=click.IntRange(min=1), default=None,
                  help="Worker processes for feature extraction (default: every core).")
    @click.option("--cache/--no-cache", "use_cache", default=True, show_default=True,
                  help="Read and write the feature cache (see `inkvoice cache`).")
    @click.option("--scheduler", metavar="ADDRESS", envvar="INKVOICE_SCHEDULER", default=None,
                  help="Extract features on the Dask cluster whose scheduler is at ADDRESS, e.g. tcp://10.0.0.5:8786 "
                       "(default: $INKVOICE_SCHEDULER, else this machine). Its workers read the files at the paths "
                       "given here, unless --send-files.")
    @click.option("--send-files", is_flag=True,
                  help="With --scheduler: send each file's bytes to the workers, for workers that do not share "
                       "this machine's files.")
    @functools.wraps(command)
    def wrapper(*args, jobs, use_cache, scheduler, send_files, **kwargs):
        from inkvoice.core.extraction import ExtractionSettings

        if send_files and not scheduler:
            raise click.UsageError("--send-files needs --scheduler (or INKVOICE_SCHEDULER)")
        settings = ExtractionSettings(n_jobs=jobs, cache=use_cache, scheduler=scheduler or None, send_files=send_files)
        return command(*args, extraction=settings, **kwargs)

    return wrapper


class CommaList(click.ParamType):
    """Comma-separated values of one type, e.g. ``256,128`` or ``16,32``.

    Parameters
    ----------
    item_type : callable
        Converts one item (``int``, ``float``, ``str``).
    minimum : number or None
        Smallest value allowed for every item.
    example : str
        Shown in the error message.
    """

    name = "list"

    def __init__(self, item_type=int, minimum=None, example="256,128"):
        self.item_type = item_type
        self.minimum = minimum
        self.example = example

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        parts = [part.strip() for part in str(value).split(",") if part.strip()]
        try:
            items = [self.item_type(part) for part in parts]
        except ValueError:
            items = None
        if not items or (self.minimum is not None and any(item < self.minimum for item in items)):
            bound = "" if self.minimum is None else f" of at least {self.minimum}"
            self.fail(f"expected comma-separated values{bound} such as {self.example}; got {value!r}", param, ctx)
        return items


class OutputFile(click.Path):
    """A file the command writes (model, PNG, JSON), checked before any work starts.

    Only a regular file or a new name is accepted: a folder, device (``/dev/full``), FIFO or
    socket is refused, as is a place that cannot be written (under a file, a read-only folder,
    a full disk, a file-size limit), with a usage error naming the option.
    """

    def __init__(self):
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        from inkvoice.core.files import check_output_path

        path = super().convert(value, param, ctx)
        try:
            return check_output_path(path)
        except ProjectError as error:
            self.fail(str(error), param, ctx)
