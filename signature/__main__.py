"""``python -m signature`` runs the signature command."""

from signature.cli import main

main()
