"""What keeps running on AWS while a command waits, so Ctrl-C can name it and how to stop it.

A command wraps its wait in `waiting_on(...)`; on KeyboardInterrupt the entry stays set and
the CLI's handler (dogclf/cli.py) prints `interrupted_message()` instead of a bare
"Interrupted.": the job or endpoint goes on billing whether or not the command watches it.
Stdlib only: cli.py imports it on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Running:
    what: str  # "Training job dogclf-dev-20261201-120000"
    keeps: str  # "keeps running (and billing)"
    remedy: str  # "stop it with `dogclf stop dogclf-dev-...`"

    def line(self) -> str:
        return f"Interrupted. {self.what} {self.keeps}: {self.remedy}"


_waiting: list[Running] = []


@contextmanager
def waiting_on(what: str, keeps: str, remedy: str) -> Iterator[None]:
    """Register what the block waits on; left registered when Ctrl-C ends the block."""
    entry = Running(what, keeps, remedy)
    _waiting.append(entry)
    try:
        yield
    except KeyboardInterrupt:
        raise  # the CLI's handler reads it
    except BaseException:
        _waiting.remove(entry)
        raise
    _waiting.remove(entry)


def waiting_on_job(kind: str, name: str) -> AbstractContextManager[None]:
    """A SageMaker training or tuning job (`kind`: "training job" / "tuning job")."""
    if kind == "tuning job":
        keeps, them = "and its training jobs keep running (and billing)", "them"
    else:
        keeps, them = "keeps running (and billing)", "it"
    return waiting_on(
        f"{kind.capitalize()} {name}", keeps, f"stop {them} with `dogclf stop {name}`"
    )


def interrupted_message() -> str:
    """The line for Ctrl-C: the innermost wait's, else a bare "Interrupted."."""
    if not _waiting:
        return "Interrupted."
    line = _waiting[-1].line()
    _waiting.clear()
    return line
