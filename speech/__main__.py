"""``python -m speech`` runs the ``speech`` command."""

from speech.cli import main

main()
