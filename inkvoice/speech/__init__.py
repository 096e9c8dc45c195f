"""Spoken-digit recognition (or any small spoken vocabulary): MFCC features and an MLP."""
