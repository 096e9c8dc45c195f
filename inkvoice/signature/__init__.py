"""Signature verification: clean and normalise a scan, describe it with HOG, compare it with references."""
