"""``python -m inkvoice`` runs the ``inkvoice`` command."""

from inkvoice.cli import main

main()
