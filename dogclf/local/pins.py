"""The versions of the packages the emulator drives, checked before it starts.

moto_ext patches moto's internals, and the rehearsal runs AWS's own container code (the
SageMaker training launcher, the inference handler service, the Lambda runtime client);
each was written against one version, and a silent mismatch after an upgrade would make
the tests and the demo lie. pyproject.toml's `emulator` extra pins the same versions.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from dogclf.errors import DogclfError

EMULATOR_PINS: dict[str, str] = {
    "moto": "5.2.5",
    "sagemaker-training": "5.1.4",
    "sagemaker-pytorch-training": "3.0.0",
    "sagemaker-inference": "1.10.1",
    "sagemaker-pytorch-inference": "2.0.25",
    "awslambdaric": "4.2.2",
}


def check_pins(names: tuple[str, ...] = tuple(EMULATOR_PINS)) -> None:
    """One line naming every package whose installed version is not the pinned one."""
    wrong = []
    for name in names:
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "not installed"
        if found != EMULATOR_PINS[name]:
            wrong.append(f"{name} {found} (needs {EMULATOR_PINS[name]})")
    if wrong:
        raise DogclfError(
            "the emulator was written against other versions: " + ", ".join(wrong),
            "pip install 'dogclf[emulator]' (it pins them; `make demo` in a checkout)",
        )
