"""The ``inkvoice`` command: what spans both pipelines (each pipeline has its own command too)."""

import click

from inkvoice import __version__
from inkvoice.core.command import ProjectGroup


@click.group(cls=ProjectGroup)
@click.version_option(__version__, prog_name="inkvoice")
def main():
    """Spoken digits and signature verification on one multilayer perceptron."""
