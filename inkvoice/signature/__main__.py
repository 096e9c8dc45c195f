"""``python -m inkvoice.signature`` runs the signature command."""

from inkvoice.signature.cli import main

main()
