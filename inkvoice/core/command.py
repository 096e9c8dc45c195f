"""Click support shared by the pipelines' CLIs: a ProjectError becomes one "Error:" line.

This is the one core module that imports click; the numerical core never does.
"""

import sys

import click

from inkvoice.core.errors import ProjectError


class ProjectGroup(click.Group):
    """A click group whose commands turn ProjectError into a one-line error and exit code 1.

    Other exceptions are bugs and keep their tracebacks.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ProjectError as error:
            raise click.ClickException(str(error)) from None


def progress_reporter(total, label, enabled=True):
    """A click progress bar on stderr and the ``progress(n_done)`` callback that advances it.

    Returns ``(bar, callback)``; use the bar as a context manager around the work.
    """
    # sys.stderr is looked up at call time, so click's test runner captures it too.
    bar = click.progressbar(length=total, label=label, file=sys.stderr, hidden=not enabled)
    return bar, bar.update
