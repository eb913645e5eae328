"""How a training run can end early; the worker maps each to a job state."""


class DeterministicFailure(RuntimeError):
    """Running the job again would fail the same way (bad config, NaN loss): do not retry."""


class NonFiniteLoss(DeterministicFailure):
    pass


class Interrupted(RuntimeError):
    """Asked to stop (SIGTERM, Ctrl-C); a checkpoint was written at `step`."""

    def __init__(self, step: int) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved")
        self.step = step
