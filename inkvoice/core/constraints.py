"""Allowed values of settings, declared once per class as a table and checked at its boundary.

As scikit-learn's ``_parameter_constraints``: a class maps each setting to a rule, and one call
of ``validate`` checks them all, each refusal a ParameterError (a ValueError) that names the
setting, the value received and what is allowed.
"""

import numpy as np

from inkvoice.core.errors import ParameterError, check_choice, check_number


class Interval:
    """A number (``integer`` for whole numbers) between ``low`` and ``high``; None is unbounded."""

    def __init__(self, low=None, high=None, *, low_open=False, high_open=False, integer=False):
        self.bounds = dict(low=low, high=high, low_open=low_open, high_open=high_open, integer=integer)

    def check(self, name, value):
        if isinstance(value, np.generic):
            value = value.item()
        return check_number(name, value, **self.bounds)


class Options:
    """One of a fixed set of values."""

    def __init__(self, *values):
        self.values = values

    def check(self, name, value):
        return check_choice(name, value, self.values)


class Boolean:
    def check(self, name, value):
        if not isinstance(value, (bool, np.bool_)):
            raise ParameterError(f"{name} must be True or False; got {value!r}")
        return bool(value)


class Sizes:
    """A non-empty sequence of whole numbers > 0 (one int is a sequence of one)."""

    def check(self, name, value):
        sizes = (value,) if isinstance(value, (int, np.integer)) else value
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise ParameterError(f"{name} must be a sequence of integers > 0; got {value!r}") from None
        if not sizes:
            raise ParameterError(f"{name} must hold at least one size; got {value!r}")
        return tuple(Interval(1, integer=True).check(name, size) for size in sizes)


class Optional:
    """None, or what ``rule`` allows."""

    def __init__(self, rule):
        self.rule = rule

    def check(self, name, value):
        return None if value is None else self.rule.check(name, value)


def validate(constraints, values):
    """Check every entry of ``values`` named in ``constraints``; returns the checked values."""
    return {name: rule.check(name, values[name]) for name, rule in constraints.items() if name in values}
