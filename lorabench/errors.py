"""Exception types shared across layers: each layer raises these, and the worker and the CLI
map them to job states and messages without importing the layer that raised them."""


class ConfigError(ValueError):
    """A user mistake in a sweep or job config; the message names the field."""


class UnknownVariantError(ValueError):
    """Raised for a variant name that is not registered."""


class InvalidVariantParams(ValueError):
    """Raised for variant hyperparameters that the variant does not accept."""


class UnknownTaskError(ValueError):
    """Raised for a task name that is not registered."""


class InvalidTaskParams(ValueError):
    """Raised for task parameters that the task does not accept."""


class DataSourceError(ValueError):
    """A dataset name or path that cannot be loaded; the message says why."""


class StoreError(RuntimeError):
    """The database cannot be used as asked; the message says what to do."""


class DeterministicFailure(RuntimeError):
    """Running the job again would fail the same way (bad config, NaN loss): do not retry."""


class NonFiniteLoss(DeterministicFailure):
    pass


class Interrupted(RuntimeError):
    """Asked to stop (SIGTERM, Ctrl-C); a checkpoint was written at `step`."""

    def __init__(self, step: int) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved")
        self.step = step
