"""The ``inkvoice`` command: what spans both pipelines (each pipeline has its own command too)."""

from pathlib import Path

import click

from inkvoice import __version__
from inkvoice.core.command import ProjectGroup
from inkvoice.serve.guard import DEFAULT_CLIENT_LIMIT, DEFAULT_WRITER_LIMIT
from inkvoice.serve.service import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT

_MODEL = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group(cls=ProjectGroup)
@click.version_option(__version__, prog_name="inkvoice")
def main():
    """Spoken digits and signature verification on one multilayer perceptron."""


@main.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on; the default answers this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free port; the address is printed).")
@click.option("--speech-model", type=_MODEL, default=None, help="A speech model file (.npz) to answer with.")
@click.option("--signature-model", type=_MODEL, default=None, help="A signature model file (.npz) to verify with.")
@click.option("--store", default=None,
              help="Enrolment store: an SQLite file or postgresql://user@host:port/database (shared by several "
                   "servers); default: the signature model with the suffix .enrol.sqlite.")
@click.option("--token", envvar="INKVOICE_TOKEN", default=None,
              help="Bearer token that enrolment and deletion need (or $INKVOICE_TOKEN); without one both are off. "
                   "It also lists writers and shows their references.")
@click.option("--read-token", envvar="INKVOICE_READ_TOKEN", default=None,
              help="Bearer token that only lists writers and shows their references' pictures (or "
                   "$INKVOICE_READ_TOKEN); without either token both are off.")
@click.option("--client-limit", type=click.IntRange(min=0), default=DEFAULT_CLIENT_LIMIT, show_default=True,
              help="Verifications one client address may ask for per hour (then 429 with Retry-After); 0: no limit.")
@click.option("--writer-limit", type=click.IntRange(min=0), default=DEFAULT_WRITER_LIMIT, show_default=True,
              help="Verifications of one writer per hour, from all clients together; 0: no limit.")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append a JSON line for every enrolment, removal and verification to this file (time, client, "
                   "writer, action, status, verdict, score).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_UPLOAD_MB,
              show_default=True,
              help="Largest request accepted, in megabytes (413 above it).")
@click.option("--test-copies", type=click.IntRange(0, 50), default=None,
              help="Speech test-time augmentation copies per clip (default: the model's setting).")
@click.option("--busy-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="How long a request waits for a store another process holds before answering 503 "
                   "(default: the store's own, 10 s).")
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes that run the jobs, each with its own copy of the models (default: one per core, "
                   "at most 8); 0 runs them in the server's own process.")
def serve(host, port, speech_model, signature_model, store, token, read_token, client_limit, writer_limit, audit_log,
          max_upload_mb, test_copies, busy_seconds, workers):
    """Serve the JSON API and the web page for the models given (at least one).

    The page is at / ; the API's OpenAPI schema at /openapi.json; /healthz answers 503 while
    the models load, 200 when ready. Stop with Ctrl-C or SIGTERM.
    """
    from inkvoice.serve.server import run

    run(host=host, port=port, speech_model=speech_model, signature_model=signature_model, store=store, token=token,
        max_upload_mb=max_upload_mb, test_copies=test_copies, busy_seconds=busy_seconds, workers=workers,
        read_token=read_token, client_limit=client_limit, writer_limit=writer_limit, audit_log=audit_log,
        announce=click.echo)


@main.group(cls=ProjectGroup)
def cache():
    """Show or clear the feature cache.

    Features are kept by file content in the cache folder's features/ ($INKVOICE_CACHE, default
    ~/.cache/inkvoice); the least recently used go when it outgrows $INKVOICE_CACHE_LIMIT (2G).
    """


@cache.command("info")
def cache_info():
    """Where the feature cache lives, its entries, size and limit."""
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
