"""inkvoice: spoken digits and signature verification on one numpy multilayer perceptron."""

__version__ = "0.1.0"
