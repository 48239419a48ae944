"""One exception family for everything a user can get wrong or AWS can refuse.

The CLI prints `Error: <message>` and, on the next line, `Hint: <hint>`, then exits 1.
"""

from __future__ import annotations


class DogclfError(Exception):
    """A failure the user can act on: what went wrong, and what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(DogclfError):
    """dogclf.toml (or a DOGCLF_* override) is missing, malformed or invalid."""


class DatasetError(DogclfError):
    """The dataset folder does not follow the dogImages layout, or holds bad files."""


class AwsError(DogclfError):
    """An AWS call failed; the message names the call, the reason and the fix."""


class NotFoundError(AwsError):
    """The AWS resource asked for does not exist."""


class MissingExtraError(DogclfError):
    """A command needs an optional dependency group that is not installed."""


class ResourceFailedError(DogclfError):
    """A training job, tuning job or endpoint ended in Failed."""


def require_extra(module: str, extra: str, command: str) -> None:
    """Fail with one line when `command` needs `pip install 'dogclf[extra]'` for `module`."""
    require_extras(command, (module, extra))


def require_extras(command: str, *needs: tuple[str, str]) -> None:
    """Fail with one line naming every (module, extra) of `needs` whose module is missing,
    and the one install that brings them all."""
    import importlib.util

    missing = [
        (module, extra) for module, extra in needs if importlib.util.find_spec(module) is None
    ]
    if not missing:
        return
    modules = " and ".join(module for module, _ in missing)
    extras = ",".join(dict.fromkeys(extra for _, extra in missing))
    verb = "is" if len(missing) == 1 else "are"
    raise MissingExtraError(
        f"`dogclf {command}` needs {modules}, which {verb} not installed",
        f"pip install 'dogclf[{extras}]'  (or `make install` in a checkout)",
    )
