"""From `[training]` in dogclf.toml to the hyperparameters a SageMaker job passes.

NO TORCH HERE: the control plane builds training and tuning jobs with this on hosts without
torch. Keys are the entry point's option names without `--` (`batch-size`), values are
strings (SageMaker passes every hyperparameter as a string; booleans as "true"/"false").
`tests/test_hyperparameters.py` checks the entry point's parser accepts every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dogclf.config import TrainingSection

ENTRY_MODULE = "dogclf.training.train"

# TrainingSection field -> entry point option (without "--"). Fields not listed here
# (instance type, spot, image, ...) describe the job, not the training program.
HYPERPARAMETER_FIELDS: dict[str, str] = {
    "arch": "arch",
    "pretrained": "pretrained",
    "freeze_backbone": "freeze-backbone",
    "epochs": "epochs",
    "batch_size": "batch-size",
    "lr": "lr",
    "optimizer": "optimizer",
    "weight_decay": "weight-decay",
    "label_smoothing": "label-smoothing",
    "patience": "patience",
    "image_size": "image-size",
    "num_workers": "num-workers",
    "amp": "amp",
    "seed": "seed",
}


def hp_value(value: Any) -> str:
    """One hyperparameter as SageMaker carries it: a string, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hyperparameters_from_config(training: TrainingSection) -> dict[str, str]:
    """`{"arch": "resnet50", "epochs": "10", "batch-size": "64", "lr": "0.001", ...}`.

    Unset optional values (num_workers = None: "use the host's CPUs") are left out so the
    entry point's own default applies on the training host.
    """
    params: dict[str, str] = {}
    for field, option in HYPERPARAMETER_FIELDS.items():
        value = getattr(training, field)
        if value is not None:
            params[option] = hp_value(value)
    return params


def hyperparameters_argv(hyperparameters: Mapping[str, str]) -> list[str]:
    """`{"batch-size": "64"}` -> `["--batch-size", "64"]`: the entry point's command line,
    as the SageMaker container's driver builds it from the job's hyperparameters."""
    return [token for key, value in hyperparameters.items() for token in (f"--{key}", str(value))]
