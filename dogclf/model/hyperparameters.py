"""From `[training]` in dogclf.toml to the hyperparameters a SageMaker job passes.

NO TORCH HERE: the control plane builds training and tuning jobs with this on hosts without
torch. Keys are the entry point's option names without `--` (`batch-size`). A job request
carries them JSON-encoded, as the SageMaker SDK's framework estimators send them (`10`,
`0.001`, `true`, `"resnet50"`): the training toolkit json-decodes each value
(sagemaker_training/environment.py, read_hyperparameters) and passes `--key value` to the
program. On a command line of our own (train-ec2) they are plain strings.
`tests/test_hyperparameters.py` checks the entry point's parser accepts every key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dogclf.config import TrainingSection

ENTRY_MODULE = "dogclf.training.train"
# The PyTorch container starts the program through torchrun when this is true
# (sagemaker_pytorch_container/training.py, LAUNCH_TORCH_DISTRIBUTED_ENV_NAME).
TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"

# TrainingSection field -> entry point option (without "--"). Fields not listed here
# (instance type, spot, image, ...) describe the job, not the training program.
HYPERPARAMETER_FIELDS: dict[str, str] = {
    "arch": "arch",
    "pretrained": "pretrained",
    "freeze_backbone": "freeze-backbone",
    "feature_cache": "feature-cache",
    "augment_views": "augment-views",
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
    "int8_min_agreement": "int8-min-agreement",
}

# Options that only apply to a frozen backbone: a job without one is sent without them.
FROZEN_ONLY = ("feature-cache", "augment-views")


def hp_value(value: Any) -> str:
    """One hyperparameter on a command line: a string, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hyperparameter_values(training: TrainingSection) -> dict[str, Any]:
    """`{"arch": "resnet50", "epochs": 10, "batch-size": 64, "lr": 0.001, ...}`, typed.

    Unset optional values (num_workers = None: "use the host's CPUs") are left out so the
    entry point's own default applies on the training host, and so are the feature cache's
    settings when the backbone is not frozen.
    """
    values = {option: getattr(training, field) for field, option in HYPERPARAMETER_FIELDS.items()}
    if not training.freeze_backbone:  # the feature cache's settings mean nothing then
        values = {k: v for k, v in values.items() if k not in FROZEN_ONLY}
    return {option: value for option, value in values.items() if value is not None}


def hyperparameters_from_config(training: TrainingSection) -> dict[str, str]:
    """`{"arch": "resnet50", "epochs": "10", ...}`: plain strings, for a command line."""
    return {k: hp_value(v) for k, v in hyperparameter_values(training).items()}


def encode_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """As a job request carries them: `json.dumps` of each value (the SDK's framework
    estimators do so; its sagemaker/core/parameter.py as_json_range: "The deep learning
    framework images require that hyperparameters be serialized as JSON")."""
    return {str(k): json.dumps(v) for k, v in values.items()}


def decode_hyperparameter(value: str) -> Any:
    """One request value as the toolkit reads it: JSON when it parses, else the text."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def hyperparameters_argv(hyperparameters: Mapping[str, str]) -> list[str]:
    """`{"batch-size": "64"}` -> `["--batch-size", "64"]`: the entry point's command line,
    as the SageMaker container's driver builds it from the job's hyperparameters."""
    return [token for key, value in hyperparameters.items() for token in (f"--{key}", str(value))]
