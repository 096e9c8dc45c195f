"""Learning-rate schedules, asked once per epoch for the rate of the next epoch."""

import math

from inkvoice.core.errors import check_choice, check_number


class StepSchedule:
    """Multiply the rate by ``factor`` every ``step_size`` epochs."""

    name = "step"

    def __init__(self, base_rate, step_size=30, factor=0.1):
        self.base_rate = base_rate
        self.step_size = check_number("step_size", step_size, low=1, integer=True)
        self.factor = check_number("factor", factor, low=0, high=1, low_open=True)

    def rate_after(self, epoch, monitored):
        """The rate for the epoch after ``epoch`` (1-based count of finished epochs)."""
        return self.base_rate * self.factor ** (epoch // self.step_size)


class CosineSchedule:
    """Cosine decay from the base rate to ``min_rate`` over ``total_epochs`` (Loshchilov & Hutter)."""

    name = "cosine"

    def __init__(self, base_rate, total_epochs, min_rate=0.0):
        self.base_rate = base_rate
        self.total_epochs = check_number("total_epochs", total_epochs, low=1, integer=True)
        self.min_rate = check_number("min_rate", min_rate, low=0)

    def rate_after(self, epoch, monitored):
        progress = min(epoch / self.total_epochs, 1.0)
        return self.min_rate + 0.5 * (self.base_rate - self.min_rate) * (1 + math.cos(math.pi * progress))


class PlateauSchedule:
    """Multiply the rate by ``factor`` when the monitored loss has not improved for ``patience`` epochs."""

    name = "plateau"

    def __init__(self, base_rate, factor=0.5, patience=5, min_rate=1e-6):
        self.rate = base_rate
        self.factor = check_number("factor", factor, low=0, high=1, low_open=True, high_open=True)
        self.patience = check_number("patience", patience, low=1, integer=True)
        self.min_rate = check_number("min_rate", min_rate, low=0)
        self._best = math.inf
        self._waited = 0

    def rate_after(self, epoch, monitored):
        if monitored < self._best:
            self._best, self._waited = monitored, 0
        else:
            self._waited += 1
            if self._waited >= self.patience:
                self.rate, self._waited = max(self.rate * self.factor, self.min_rate), 0
        return self.rate


SCHEDULES = {cls.name: cls for cls in (StepSchedule, CosineSchedule, PlateauSchedule)}


def make_schedule(name, base_rate, max_epochs):
    """The schedule called ``name`` (None for a constant rate) with its usual settings."""
    if name is None:
        return None
    check_choice("schedule", name, tuple(SCHEDULES))
    if name == "step":
        return StepSchedule(base_rate, step_size=max(1, max_epochs // 3))
    if name == "cosine":
        return CosineSchedule(base_rate, total_epochs=max_epochs)
    return PlateauSchedule(base_rate)
