"""``python -m inkvoice.speech`` runs the ``speech`` command."""

from inkvoice.speech.cli import main

main()
