"""dogclf.toml validation: every mistake AWS would reject later is caught up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from dogclf.config import DogclfConfig, ResourceNames, load_config
from dogclf.config_doc import render_init_toml
from dogclf.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dogclf.toml"
    path.write_text(text, encoding="utf-8")
    return path


# (toml text, the field path the message must name, a phrase of the message)
INVALID = [
    (
        "[lambda]\nprovisioned_concurrency = 5\nreserved_concurrency = 3\n",
        "lambda.provisioned_concurrency",
        "lambda.reserved_concurrency",
    ),
    ("[autoscaling]\nmin_instances = 4\nmax_instances = 3\n", "autoscaling.min_instances", "max"),
    ('[endpoint]\ninstance_type = "m5.large"\n', "endpoint.instance_type", "ml.m5.large"),
    ('[training]\ninstance_type = "p3.2xlarge"\n', "training.instance_type", "ml.p3.2xlarge"),
    (
        '[training]\nec2_instance_type = "ml.g4dn.xlarge"\n',
        "training.ec2_instance_type",
        "g4dn.xlarge",
    ),
    ('[aws]\nbucket = "My_Bucket"\n', "aws.bucket", "bucket name"),
    ('[aws]\nbucket = "192.168.1.1"\n', "aws.bucket", "IP address"),
    ('[aws]\nbucket = "ab"\n', "aws.bucket", "3 to 63"),
    ("[training]\nlr = 0\n", "training.lr", "> 0"),
    ("[training]\nlr = -0.1\n", "training.lr", "> 0"),
    ("[hpo]\nbatch_sizes = []\n", "hpo.batch_sizes", "empty"),
    ("[hpo]\nlr_min = 0.1\nlr_max = 0.01\n", "hpo.lr_min", "hpo.lr_max"),
    ("[hpo]\nepochs_min = 9\nepochs_max = 3\n", "hpo.epochs_min", "hpo.epochs_max"),
    ("[hpo]\nmax_jobs = 2\nmax_parallel_jobs = 4\n", "hpo.max_parallel_jobs", "max_jobs"),
    ("[training]\nspot = true\n", "training.max_wait", "training.max_run"),
    ("[training]\nspot = true\nmax_run = 7200\nmax_wait = 3600\n", "training.max_wait", "7200"),
    ("[training]\nepochz = 3\n", "training.epochz", "unknown key"),
    ("[trainning]\nepochs = 3\n", "trainning", "unknown key"),
    ('[training]\narch = "resnet5"\n', "training.arch", "resnet50"),
    ('[training]\noptimizer = "rmsprop"\n', "training.optimizer", "adam"),
    ('project = "My Project"\n', "project", "lowercase"),
    ('[aws]\nrole_arn = "SageMakerRole"\n', "aws.role_arn", "arn:aws:iam"),
    ('[aws]\ntags = { "dogclf:stage" = "x" }\n', "aws.tags", "reserved"),
    (
        "[endpoint]\ninitial_instance_count = 1\n[autoscaling]\nmin_instances = 2\n",
        "autoscaling.min_instances",
        "endpoint.initial_instance_count",
    ),
    ('[lambda]\nruntime = "python2.7"\n', "lambda.runtime", "python3.12"),
    ("[lambda]\nmemory_mb = 64\n", "lambda.memory_mb", "128"),
    ("[training]\nepochs = 0\n", "training.epochs", "greater than or equal to 1"),
]


@pytest.mark.parametrize(
    ("text", "field", "phrase"), INVALID, ids=[i[1] + ":" + i[2] for i in INVALID]
)
def test_invalid_config_names_the_field(tmp_path: Path, text: str, field: str, phrase: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    message = info.value.message
    assert field in message, message
    assert phrase in message, message


def test_at_least_twelve_invalid_cases() -> None:
    assert len(INVALID) >= 12


def test_defaults_follow_the_reference_project() -> None:
    cfg = DogclfConfig()
    assert cfg.training.arch == "resnet50"
    assert cfg.endpoint.instance_type == "ml.m5.large"
    assert cfg.autoscaling.max_instances == 3
    assert cfg.autoscaling.scale_in_cooldown == cfg.autoscaling.scale_out_cooldown == 30
    assert (cfg.hpo.lr_min, cfg.hpo.lr_max) == (0.001, 0.1)
    assert min(cfg.hpo.batch_sizes) == 32 and max(cfg.hpo.batch_sizes) == 512


def test_env_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[training]\nepochs = 3\n[aws]\nbucket = "from-file"\n')
    cfg = load_config(
        path,
        environ={
            "DOGCLF_TRAINING__EPOCHS": "7",
            "DOGCLF_STAGE": "prod",
            "DOGCLF_HPO__BATCH_SIZES": "[16, 32]",
        },
    )
    assert cfg.training.epochs == 7
    assert cfg.stage == "prod"
    assert cfg.hpo.batch_sizes == [16, 32]
    assert cfg.aws.bucket == "from-file"


def test_env_typo_is_an_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"training\.epochz"):
        load_config(write(tmp_path, ""), environ={"DOGCLF_TRAINING__EPOCHZ": "3"})


def test_aws_variables_are_not_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""), environ={"AWS_REGION": "eu-west-1", "AWS_PROFILE": "x"})
    assert cfg.aws.region is None and cfg.aws.profile is None  # boto3 reads them itself


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_bad_toml_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[training\nepochs = 3\n"), environ={})


def test_init_template_round_trips_to_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, render_init_toml()), environ={})
    assert cfg == DogclfConfig()


def test_resource_names_fit_aws_limits() -> None:
    names = ResourceNames("a" * 32, "b" * 32)
    assert len(names.endpoint) <= 63
    assert len(names.endpoint_config("f" * 64)) <= 63
    assert len(names.model("f" * 64)) <= 63
    assert len(names.training_job("20261125-101010")) <= 63
    assert len(names.tuning_job("261125-1010")) <= 32
    assert len(names.lambda_function) <= 64
    assert len(names.lambda_role) <= 64
    # deterministic, and still distinct after shortening
    assert names.endpoint == ResourceNames("a" * 32, "b" * 32).endpoint
    assert names.endpoint != ResourceNames("a" * 32, "b" * 31 + "c").endpoint


def test_names_and_tags_derive_from_project_and_stage() -> None:
    cfg = DogclfConfig(project="dogs", stage="prod")
    assert cfg.names.endpoint == "dogs-prod"
    assert cfg.names.lambda_function == "dogs-prod-predict"
    assert cfg.tags["dogclf:project"] == "dogs" and cfg.tags["dogclf:stage"] == "prod"


def test_s3_prefix_needs_a_bucket() -> None:
    with pytest.raises(ConfigError, match=r"aws\.bucket"):
        DogclfConfig().s3_prefix("data")
    cfg = DogclfConfig.model_validate({"aws": {"bucket": "my-bucket", "prefix": "/ml/"}})
    assert cfg.s3_prefix("data") == "s3://my-bucket/ml/dev/data"


def test_projects_sharing_a_bucket_get_their_own_prefix() -> None:
    def prefix(project: str) -> str:
        cfg = DogclfConfig.model_validate({"project": project, "aws": {"bucket": "shared"}})
        return cfg.s3_prefix("data")

    assert prefix("dogclf") == "s3://shared/dogclf/dev/data"
    assert prefix("cats") == "s3://shared/cats/dev/data"


def test_config_accepts_exactly_the_architectures_the_model_builder_builds() -> None:
    # One list (model/archs.py, torch-free) for the config's validation and the builder.
    from dogclf.config import TrainingSection
    from dogclf.model.archs import ARCHS
    from dogclf.model.network import ARCHS as BUILDER_ARCHS

    assert BUILDER_ARCHS is ARCHS
    for arch in ARCHS:
        assert TrainingSection(arch=arch).arch == arch
    with pytest.raises(ValueError):
        TrainingSection(arch="resnet9000")
