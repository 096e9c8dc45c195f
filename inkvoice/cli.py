"""The ``inkvoice`` command: what spans both pipelines (each pipeline has its own command too)."""

import click

from inkvoice import __version__
from inkvoice.core.command import ProjectGroup


@click.group(cls=ProjectGroup)
@click.version_option(__version__, prog_name="inkvoice")
def main():
    """Spoken digits and signature verification on one multilayer perceptron."""


@main.group(cls=ProjectGroup)
def cache():
    """Show or clear the feature cache (limit: $INKVOICE_CACHE_LIMIT, default 2G)."""


@cache.command("info")
def cache_info():
    """Where the feature cache lives, how many entries it holds and how large it is."""
    from inkvoice.core.extraction import cache_usage

    usage = cache_usage()
    click.echo(f"folder: {usage.folder}")
    click.echo(f"entries: {usage.entries}")
    click.echo(f"size: {_megabytes(usage.bytes)} of a {_megabytes(usage.limit)} limit "
               "(least recently used entries go first)")
    if usage.old_files:
        click.echo(f"left by earlier versions: {usage.old_files} files, {_megabytes(usage.old_bytes)} "
                   "(never read; `inkvoice cache clear` removes them)")


@cache.command("clear")
def cache_clear():
    """Delete every cached feature (downloaded data sets stay)."""
    from inkvoice.core.extraction import cache_usage, clear_cache

    removed, freed = clear_cache()
    click.echo(f"removed {removed} files ({_megabytes(freed)}) from {cache_usage().folder}")


def _megabytes(n_bytes):
    return f"{n_bytes / 1e6:,.1f} MB"
