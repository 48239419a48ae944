"""What moto lacks for dogclf, added to the in-process moto server in one place.

Written against moto 5.2.5 (pinned in pyproject's `emulator` extra); `install()` refuses
other versions rather than patching internals that may have moved. Each patch adds a
missing API operation to moto's response/backend classes; nothing here changes what moto
already implements. Used by the test harness and by `dogclf demo`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

MOTO_VERSION = "5.2.5"

_installed = False
# Each patch is a zero-argument function that adds one missing operation.
PATCHES: list[Callable[[], None]] = []


def patch(fn: Callable[[], None]) -> Callable[[], None]:
    PATCHES.append(fn)
    return fn


def install() -> None:
    """Apply every patch once per process."""
    global _installed
    if _installed:
        return
    found = version("moto")
    if found != MOTO_VERSION:
        from dogclf.errors import DogclfError

        raise DogclfError(
            f"the emulator extension was written for moto {MOTO_VERSION}, found {found}",
            f"pip install 'moto[server]=={MOTO_VERSION}'",
        )
    for fn in PATCHES:
        fn()
    _installed = True
