"""The entry point's arguments: as SageMaker passes them (CLI and SM_HPS), and outside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dogclf.config import TrainingSection
from dogclf.model.hyperparameters import (
    decode_hyperparameter,
    encode_hyperparameters,
    hyperparameter_values,
    hyperparameters_from_config,
)
from dogclf.training.train import hps_to_argv, parse_args


def test_defaults_outside_sagemaker_need_no_environment() -> None:
    args = parse_args([], environ={})
    assert args.data_dir is None and args.train_dir is None
    assert args.model_dir == Path("model")
    assert args.arch == "resnet50" and args.pretrained is False


def test_sagemaker_environment_sets_the_folders() -> None:
    env = {
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_VALID": "/opt/ml/input/data/valid",
        "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
        "SM_CHECKPOINT_DIR": "/opt/ml/checkpoints",
    }
    args = parse_args([], environ=env)
    assert args.model_dir == Path("/opt/ml/model")
    assert args.train_dir == Path("/opt/ml/input/data/train")
    assert args.test_dir == Path("/opt/ml/input/data/test")
    assert args.checkpoint_dir == Path("/opt/ml/checkpoints")


def test_every_config_hyperparameter_is_accepted_as_cli_args() -> None:
    training = TrainingSection(num_workers=2, pretrained=False, freeze_backbone=False)
    hps = hyperparameters_from_config(training)
    argv = [token for key, value in hps.items() for token in (f"--{key}", value)]
    args = parse_args(argv, environ={})
    assert args.arch == training.arch and args.epochs == training.epochs
    assert args.batch_size == training.batch_size and args.lr == training.lr
    assert args.pretrained is False and args.freeze_backbone is False
    assert args.num_workers == 2 and args.amp is True


def test_sm_hps_json_is_read_and_explicit_arguments_win() -> None:
    hps = {"epochs": "7", "batch-size": 16, "pretrained": True, "lr": "0.05", "arch": "resnet18"}
    args = parse_args(["--epochs", "2"], environ={"SM_HPS": json.dumps(hps)})
    assert args.epochs == 2  # the explicit argument
    assert args.batch_size == 16 and args.lr == 0.05 and args.arch == "resnet18"
    assert args.pretrained is True


def test_booleans_arrive_as_strings_or_flags() -> None:
    assert parse_args(["--pretrained", "false"], environ={}).pretrained is False
    assert parse_args(["--pretrained", "true"], environ={}).pretrained is True
    assert parse_args(["--pretrained"], environ={}).pretrained is True
    assert parse_args(["--freeze_backbone", "True"], environ={}).freeze_backbone is True
    with pytest.raises(SystemExit):
        parse_args(["--pretrained", "maybe"], environ={})


def test_sagemaker_reserved_hyperparameters_are_ignored_but_typos_are_not() -> None:
    env = {"SM_HPS": json.dumps({"_tuning_objective_metric": "valid_accuracy", "epochs": "3"})}
    args = parse_args(["--sagemaker_program", "train.py"], environ=env)
    assert args.epochs == 3
    with pytest.raises(SystemExit):
        parse_args(["--epoch", "3"], environ={})


def test_hps_to_argv_matches_the_container_driver() -> None:
    assert hps_to_argv('{"batch-size": "64", "amp": false, "arch": "resnet50"}') == [
        "--batch-size",
        "64",
        "--amp",
        "false",
        "--arch",
        "resnet50",
    ]
    assert hps_to_argv(None) == []


def test_request_values_are_json_and_decode_to_the_same_arguments() -> None:
    """What a job request carries (json.dumps of each value, as the SDK sends them), decoded
    and passed as the toolkit does (sagemaker_training/mapping.py to_cmd_args: sorted keys,
    str() of each decoded value), parses to the same arguments as the plain command line."""
    training = TrainingSection(num_workers=2, pretrained=False, freeze_backbone=False)
    encoded = encode_hyperparameters(hyperparameter_values(training))
    assert encoded["arch"] == '"resnet50"' and encoded["pretrained"] == "false"
    decoded = {k: decode_hyperparameter(v) for k, v in encoded.items()}
    assert decoded["epochs"] == training.epochs and decoded["lr"] == training.lr
    toolkit_argv = [t for k in sorted(decoded) for t in (f"--{k}", str(decoded[k]))]
    plain = hyperparameters_from_config(training)
    plain_argv = [t for k, v in plain.items() for t in (f"--{k}", v)]
    assert parse_args(toolkit_argv, environ={}) == parse_args(plain_argv, environ={})
    assert decode_hyperparameter("not json") == "not json"
