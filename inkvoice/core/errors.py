"""One exception hierarchy for every mistake a user can make; CLIs print these as one line."""


class ProjectError(Exception):
    """Base of the errors caused by input, options or files rather than by a bug."""


class ParameterError(ProjectError, ValueError):
    """A setting or argument has a value outside what is allowed."""


class NotFittedError(ProjectError, ValueError, AttributeError):
    """A model was used for prediction before it was trained or loaded."""


class ModelFileError(ProjectError):
    """A model file is missing, damaged, from a newer version or for another pipeline."""


class DataError(ProjectError):
    """An input file (audio, image, data folder) cannot be used."""


class OutputError(ProjectError):
    """An output file cannot be written there (a device, a read-only folder, a full disk)."""


class DataConversionWarning(UserWarning):
    """Input was accepted after a conversion its caller may not have meant (as scikit-learn's)."""


class TrainingInterrupted(ProjectError):
    """Training was stopped by Ctrl-C: what it produced is under-trained and must not be saved.

    ``epoch`` is the epoch that was running, ``history`` the training's History so far.
    """

    def __init__(self, epoch, max_epochs, history=None):
        super().__init__(f"training interrupted (Ctrl-C) during epoch {epoch} of {max_epochs}: the model is incomplete")
        self.epoch, self.max_epochs, self.history = epoch, max_epochs, history


class TrainingDiverged(ProjectError):
    """The training loss stopped being finite (NaN or infinite): the learning rate is too high
    for the data, or the features hold extreme values."""

    def __init__(self, epoch, loss, val_loss=None):
        which = f"loss {loss}" if val_loss is None else f"loss {loss}, validation loss {val_loss}"
        super().__init__(
            f"training diverged in epoch {epoch} ({which}); try a smaller learning rate or check the features"
        )
        self.epoch = epoch


def with_defaults(defaults, overrides, what):
    """``defaults`` updated with ``overrides``, refusing any name ``defaults`` does not know.

    ``what`` names the settings in the message, e.g. "feature parameter".
    """
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ParameterError(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    return {**defaults, **overrides}


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise a ParameterError naming them."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ParameterError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def check_number(name, value, *, low=None, high=None, low_open=False, high_open=False, integer=False):
    """Return ``value`` if it is a number in the given range, else raise a ParameterError.

    ``low_open``/``high_open`` exclude the bound itself; ``integer`` requires a whole number.
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        integer and not float(value).is_integer()
    ):
        raise ParameterError(f"{name} must be {kind}; got {value!r}")
    if value != value:  # NaN
        raise ParameterError(f"{name} must be {kind}; got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ParameterError(f"{name} must be {kind} in {span}; got {value!r}")
    return int(value) if integer else value


class DependencyError(ProjectError):
    """An optional package that the requested feature needs is not installed."""
