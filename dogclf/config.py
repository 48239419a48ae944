"""dogclf.toml: pydantic models, loading with DOGCLF_* overrides, and derived resource names.

Precedence, highest first: DOGCLF_<SECTION>__<KEY> environment variables, the TOML file,
the defaults below. The standard AWS variables (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_<SERVICE>) are never copied into the config: boto3 reads them itself, and
`aws.profile` / `aws.region` only apply when the matching variable is unset.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dogclf import tag_rules
from dogclf.errors import ConfigError
from dogclf.model.archs import ARCHS

DEFAULT_CONFIG_FILE = "dogclf.toml"
ENV_PREFIX = "DOGCLF_"
# DOGCLF_* variables that steer the CLI itself rather than the config.
NON_CONFIG_ENV = {
    "DOGCLF_CONFIG",
    "DOGCLF_DEBUG",
    "DOGCLF_CHECK_REQUESTS",  # dogclf/aws/request_check.py
    "DOGCLF_CHECK_REQUESTS_LOG",
    "DOGCLF_ROLE_WAIT_S",  # dogclf/aws/session.py
    "DOGCLF_TRAINING_REPORT",  # dogclf/training/report.py
}

SAGEMAKER_INSTANCE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.[0-9]*(x?large|medium|small|metal)$")
EC2_INSTANCE = re.compile(r"^[a-z][a-z0-9-]*\.[0-9]*(x?large|medium|small|micro|nano|metal)$")
ENV_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
NAME_PART = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")


class Section(BaseModel):
    """Every section refuses unknown keys: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def _sagemaker_instance(value: str) -> str:
    if not SAGEMAKER_INSTANCE.match(value):
        hint = f"ml.{value}" if EC2_INSTANCE.match(value) else "ml.m5.large"
        raise ValueError(
            f"{value!r} is not a SageMaker instance type; use the ml. form, e.g. {hint}"
        )
    return value


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    """An AfterValidator raising what `problem(value)` finds (tag_rules' key/value checks)."""

    def check(value: str) -> str:
        found = problem(value)
        if found:
            raise ValueError(found)
        return value

    return AfterValidator(check)


TagKey = Annotated[str, _checked(tag_rules.key_problem)]
TagValue = Annotated[str, _checked(tag_rules.value_problem)]


class AwsSection(Section):
    region: str | None = Field(
        None, description="AWS region; AWS_REGION / AWS_DEFAULT_REGION win when set"
    )
    profile: str | None = Field(None, description="AWS profile; AWS_PROFILE wins when set")
    bucket: str | None = Field(
        None, description="S3 bucket for data, code and model artifacts (required for AWS steps)"
    )
    prefix: str | None = Field(
        None, description="key prefix inside the bucket; unset = the project name"
    )
    role_arn: str | None = Field(
        None, description="SageMaker execution role ARN for training jobs and models"
    )
    create_bucket: bool = Field(
        False, description="let `upload` create the bucket (private, encrypted, TLS-only)"
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict, description="extra tags on every resource dogclf creates"
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        problems = []
        if not 3 <= len(value) <= 63:
            problems.append("3 to 63 characters")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", value):
            problems.append("lowercase letters, digits, '.' and '-', starting and ending alnum")
        if ".." in value or ".-" in value or "-." in value:
            problems.append("no adjacent periods or period-dash")
        try:
            ipaddress.ip_address(value)
            problems.append("not an IP address")
        except ValueError:
            pass
        if value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3")):
            problems.append("no reserved prefix/suffix (xn--, sthree-, -s3alias, --ol-s3)")
        if problems:
            raise ValueError(
                f"{value!r} is not a valid S3 bucket name: needs " + "; ".join(problems)
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip("/")
        if not value or not re.fullmatch(r"[A-Za-z0-9!_.*'()/-]+", value):
            raise ValueError("use a non-empty S3 key prefix of letters, digits and -_./")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", value
        ):
            raise ValueError(
                f"{value!r} is not an IAM role ARN; expected arn:aws:iam::<12-digit account>:role/<name>"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        # Each key and value is checked by its type (TagKey, TagValue); here the set.
        problem = tag_rules.set_problem(list(value))
        if problem:
            raise ValueError(problem)
        return value


class DataSection(Section):
    local_dir: Path | None = Field(
        None, description="local dogImages folder (train/ valid/ test/); `upload` default"
    )
    upload_workers: int = Field(16, ge=1, le=128, description="parallel upload threads")
    multipart_threshold_mb: int = Field(
        64, ge=5, description="files larger than this are uploaded in parts"
    )
    check_images: bool = Field(True, description="decode every image before upload")


class TrainingSection(Section):
    arch: Literal[ARCHS] = Field(  # type: ignore[valid-type]
        "resnet50", description="torchvision model (tiny_cnn is a test-sized network)"
    )
    pretrained: bool = Field(True, description="start from ImageNet weights (downloaded on AWS)")
    freeze_backbone: bool = Field(True, description="train only the new classification head")
    feature_cache: bool = Field(
        True,
        description="frozen backbone: its features computed once per image and view, reused "
        "every epoch and by later trials of a tuning job",
    )
    augment_views: int = Field(
        0,
        ge=0,
        le=32,
        description="feature cache: random training views per image; 0 = eval transform",
    )
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(0.001, description="learning rate, > 0")
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    weight_decay: float = Field(0.0001, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    patience: int = Field(3, ge=0, description="early stopping: epochs without valid improvement")
    image_size: int = Field(224, ge=32, le=1024)
    num_workers: int | None = Field(
        None, ge=0, description="data loader workers; unset = host CPUs"
    )
    amp: bool = Field(
        True,
        description="mixed precision: bf16/fp16 on GPU; bf16 frozen backbone on CPUs with native bf16",
    )
    seed: int = 0
    int8_min_agreement: float = Field(
        99.0, ge=0, description="% top-1 agreement with fp32 on test for int8 serving; > 100: off"
    )
    instance_type: str = Field("ml.g4dn.xlarge", description="SageMaker training instance type")
    instance_count: int = Field(1, ge=1, le=64, description="> 1 runs torch.distributed")
    spot: bool = Field(False, description="managed spot training (needs max_wait >= max_run)")
    max_run: int = Field(86400, ge=60, le=2419200, description="seconds before SageMaker stops it")
    max_wait: int | None = Field(None, description="seconds incl. spot waiting; spot only")
    # The newest training image the SDK lists that AWS patches (dogclf/data/image_support.json);
    # `config validate` warns once it is past end of patch.
    framework_version: str = Field("2.13", description="PyTorch training container version")
    py_version: str = Field("py312", description="Python of the training container")
    image_uri: str | None = Field(None, description="explicit training image, overrides the above")
    ec2_instance_type: str = Field(
        "g4dn.xlarge", description="EC2 type of the `train-ec2` host (for cost estimates)"
    )

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, value: str) -> str:
        return _sagemaker_instance(value)

    @field_validator("lr")
    @classmethod
    def _lr(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"learning rate must be > 0, got {value}")
        return value

    @field_validator("ec2_instance_type")
    @classmethod
    def _ec2(cls, value: str) -> str:
        if value.startswith("ml."):
            raise ValueError(
                f"{value!r} is a SageMaker type; EC2 types have no ml. prefix ({value[3:]})"
            )
        if not EC2_INSTANCE.match(value):
            raise ValueError(f"{value!r} is not an EC2 instance type, e.g. g4dn.xlarge")
        return value

    @model_validator(mode="after")
    def _spot(self) -> TrainingSection:
        if self.max_wait is not None and not self.spot:
            raise ValueError("training.max_wait only applies with training.spot = true; remove it")
        if self.spot and (self.max_wait is None or self.max_wait < self.max_run):
            raise ValueError(
                f"training.spot needs training.max_wait >= training.max_run ({self.max_run} s); "
                f"set max_wait = {self.max_run} or more"
            )
        return self


class HpoSection(Section):
    lr_min: float = Field(0.001, description="lower end of the learning-rate range (log scale)")
    lr_max: float = Field(0.1, description="upper end of the learning-rate range")
    batch_sizes: list[int] = Field(
        default_factory=lambda: [32, 64, 128, 256, 512], description="categorical batch sizes"
    )
    epochs_min: int = Field(2, ge=1)
    epochs_max: int = Field(10, ge=1)
    objective: Literal["valid_accuracy", "valid_loss"] = "valid_accuracy"
    strategy: Literal["Bayesian", "Random", "Hyperband", "Grid"] = "Bayesian"
    max_jobs: int = Field(8, ge=1, le=750)
    max_parallel_jobs: int = Field(2, ge=1, le=100)

    @model_validator(mode="after")
    def _ranges(self) -> HpoSection:
        if not 0 < self.lr_min < self.lr_max:
            raise ValueError(
                f"hpo.lr_min ({self.lr_min}) must be > 0 and below hpo.lr_max ({self.lr_max})"
            )
        if not self.batch_sizes:
            raise ValueError(
                "hpo.batch_sizes is empty; list at least one batch size, e.g. [32, 64]"
            )
        if any(b < 1 for b in self.batch_sizes) or len(set(self.batch_sizes)) != len(
            self.batch_sizes
        ):
            raise ValueError("hpo.batch_sizes must be distinct positive integers")
        if self.epochs_min > self.epochs_max:
            raise ValueError(
                f"hpo.epochs_min ({self.epochs_min}) is above hpo.epochs_max ({self.epochs_max})"
            )
        if self.max_parallel_jobs > self.max_jobs:
            raise ValueError(
                f"hpo.max_parallel_jobs ({self.max_parallel_jobs}) is above hpo.max_jobs "
                f"({self.max_jobs}); lower it"
            )
        return self

    @property
    def objective_type(self) -> Literal["Maximize", "Minimize"]:
        return "Maximize" if self.objective.endswith("accuracy") else "Minimize"


# SageMaker Serverless Inference's limits (ProductionVariantServerlessConfig in botocore's
# sagemaker model; AWS's guide, "Deploy models with Amazon SageMaker Serverless Inference"):
# memory 1024-6144 MB in 1 GB steps, 1-200 concurrent requests, provisioned <= max, CPU only.
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
# Accelerated families (GPU, Inferentia, Trainium): what serverless cannot run.
ACCELERATED_INSTANCE = re.compile(r"^ml\.(g|p|inf|trn)[0-9]")


class EndpointSection(Section):
    mode: Literal["realtime", "serverless"] = Field(
        "realtime",
        description="realtime: instances billed by the hour; serverless: billed per request, "
        "scales to zero (CPU only, 4 MB requests)",
    )
    instance_type: str = Field(
        "ml.m5.large",
        description="real-time instance type (serverless: picks the CPU image, and the type "
        "`status` compares prices with)",
    )
    initial_instance_count: int = Field(1, ge=1, le=100)
    memory_mb: int = Field(
        2048, description="serverless memory: 1024-6144 in steps of 1024 (vCPUs grow with it)"
    )
    max_concurrency: int = Field(
        5, ge=1, le=200, description="serverless: concurrent requests before throttling"
    )
    provisioned_concurrency: int | None = Field(
        None,
        ge=1,
        le=200,
        description="serverless: pre-warmed (no cold start), billed while set; <= max_concurrency",
    )
    variant_name: str = Field("AllTraffic", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    # 2.6 is the last PyTorch inference image (patched until 2026-06-30); `config validate`
    # warns and points at the BYO `dogclf serve` image (endpoint.image_uri).
    framework_version: str = Field("2.6", description="PyTorch inference container version")
    py_version: str = Field("py312")
    image_uri: str | None = Field(
        None, description="explicit inference image (e.g. the `dogclf serve` BYO container)"
    )
    # Merged over what deploy sets (e.g. SAGEMAKER_MODEL_SERVER_WORKERS, OMP_NUM_THREADS):
    # an explicit value here wins.
    environment: dict[str, str] = Field(
        default_factory=dict, description="extra container environment (wins over deploy's)"
    )

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, value: str) -> str:
        return _sagemaker_instance(value)

    @model_validator(mode="after")
    def _serverless(self) -> EndpointSection:
        if self.memory_mb not in SERVERLESS_MEMORY_MB:
            raise ValueError(
                f"endpoint.memory_mb: {self.memory_mb} MB is not a serverless memory size; use "
                "1024 to 6144 in steps of 1024 (1024, 2048, 3072, 4096, 5120, 6144)"
            )
        provisioned = self.provisioned_concurrency
        if provisioned is not None and self.mode != "serverless":
            raise ValueError(
                'endpoint.provisioned_concurrency only applies with endpoint.mode = "serverless"; '
                "remove it or switch the mode"
            )
        if provisioned is not None and provisioned > self.max_concurrency:
            raise ValueError(
                f"endpoint.provisioned_concurrency ({provisioned}) is above "
                f"endpoint.max_concurrency ({self.max_concurrency}), which AWS refuses; "
                "lower provisioned or raise max"
            )
        if self.mode == "serverless" and ACCELERATED_INSTANCE.match(self.instance_type):
            raise ValueError(
                f"serverless endpoints run on CPUs only, but endpoint.instance_type "
                f"{self.instance_type} is an accelerated type (it picks the image); set a CPU "
                'type such as ml.m5.large, or endpoint.mode = "realtime"'
            )
        return self

    @field_validator("environment", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        """TOML's `OMP_NUM_THREADS = 4` is meant as the text "4"."""
        if isinstance(value, dict):
            return {
                k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()
            }
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        # CreateModel's EnvironmentMap: keys [a-zA-Z_][a-zA-Z0-9_]*, each key and value
        # <= 1024 characters, at most 100 entries (deploy adds about 10 of its own).
        for key, text in value.items():
            if not ENV_KEY.fullmatch(key) or len(key) > 1024:
                raise ValueError(
                    f"{key!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                )
            if len(text) > 1024:
                raise ValueError(f"the value of {key} is over 1024 characters (AWS's limit)")
        if len(value) > 80:
            raise ValueError(f"{len(value)} variables; CreateModel takes 100 in all, keep it to 80")
        return value


class AutoscalingSection(Section):
    min_instances: int = Field(1, ge=1, le=100)
    max_instances: int = Field(3, ge=1, le=100)
    target_invocations_per_instance: float = Field(
        70.0, gt=0, description="SageMakerVariantInvocationsPerInstance target (per minute)"
    )
    scale_in_cooldown: int = Field(30, ge=0, le=3600, description="seconds")
    scale_out_cooldown: int = Field(30, ge=0, le=3600, description="seconds")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSection:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"autoscaling.min_instances ({self.min_instances}) is above "
                f"autoscaling.max_instances ({self.max_instances}); raise max or lower min"
            )
        return self


class LambdaSection(Section):
    runtime: Literal["python3.11", "python3.12", "python3.13"] = "python3.12"
    architecture: Literal["arm64", "x86_64"] = "arm64"
    memory_mb: int = Field(256, ge=128, le=10240)
    timeout_s: int = Field(30, ge=1, le=900)
    # Unset by default: a new account's limit is often 10, all of it kept unreserved, so
    # any reserve is refused there. 0 is a reserve too: it throttles every call.
    reserved_concurrency: int | None = Field(
        None, ge=0, description="cap on concurrent executions (unset = account pool)"
    )
    provisioned_concurrency: int = Field(
        0, ge=0, description="pre-warmed environments on the alias (billed hourly)"
    )
    alias: str = Field("live", pattern=r"^[a-zA-Z][a-zA-Z0-9_-]{0,127}$")
    top_k: int = Field(5, ge=1, le=133)
    max_payload_mb: float = Field(5.5, gt=0, le=6, description="sync invoke payload cap is 6 MB")
    s3_input: bool = Field(False, description='accept {"s3_uri": ...} events under data prefix')
    function_url: bool = Field(False, description="create a Lambda function URL")
    function_url_auth: Literal["AWS_IAM", "NONE"] = "AWS_IAM"

    @model_validator(mode="after")
    def _concurrency(self) -> LambdaSection:
        reserved = self.reserved_concurrency
        if reserved is not None and self.provisioned_concurrency > reserved:
            raise ValueError(
                f"lambda.provisioned_concurrency ({self.provisioned_concurrency}) is above "
                f"lambda.reserved_concurrency ({reserved}), which AWS refuses; "
                "lower provisioned or raise reserved"
            )
        if reserved == 0 and self.function_url:
            raise ValueError("lambda.reserved_concurrency = 0 throttles every call; raise it")
        return self


class ServingSection(Section):
    port: int = Field(8080, ge=1, le=65535)
    top_k: int = Field(5, ge=1, le=133)
    max_batch_size: int = Field(16, ge=1, le=256, description="most images in one forward pass")
    max_batch_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="one worker: how long a batch waits for more; several: none"
    )
    max_payload_mb: float = Field(6.0, gt=0, le=100, description="SageMaker caps requests at 6 MB")
    max_image_pixels: int = Field(40_000_000, ge=1, description="decompression-bomb guard")
    decode_threads: int | None = Field(None, ge=1, description="unset = host CPUs")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto", description="CPU: auto = int8 where usable and fast, bf16 where native, else fp32"
    )
    url_allow_hosts: list[str] = Field(
        default_factory=list, description='hosts {"url": ...} may fetch from; empty = off'
    )
    # Admission control and connection limits of `dogclf serve` (serving/asgi.py, batching.py).
    max_queue: int = Field(256, ge=1, le=100_000, description="images waiting for the model")
    request_deadline_s: float = Field(
        10.0, gt=0, le=55, description="answer within this or refuse 503 (SageMaker allows 60)"
    )
    keep_alive_s: float = Field(
        75.0, ge=1, le=3600, description="idle connection limit; above SageMaker's 60 s"
    )
    header_timeout_s: float = Field(10.0, gt=0, le=300, description="slow request headers")
    body_timeout_s: float = Field(30.0, gt=0, le=300, description="slow request bodies")


class DogclfConfig(Section):
    project: str = Field("dogclf", description="project name, first part of every resource name")
    stage: str = Field("dev", description="stage (dev, prod, ...), second part of every name")
    aws: AwsSection = Field(default_factory=AwsSection)
    data: DataSection = Field(default_factory=DataSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    hpo: HpoSection = Field(default_factory=HpoSection)
    endpoint: EndpointSection = Field(default_factory=EndpointSection)
    autoscaling: AutoscalingSection = Field(default_factory=AutoscalingSection)
    lambda_: LambdaSection = Field(default_factory=LambdaSection, alias="lambda")
    serving: ServingSection = Field(default_factory=ServingSection)

    @field_validator("project", "stage")
    @classmethod
    def _name_part(cls, value: str) -> str:
        if not NAME_PART.match(value):
            raise ValueError(
                f"{value!r} must be 1-32 lowercase letters, digits or '-', starting with a letter"
            )
        return value

    @model_validator(mode="after")
    def _cross(self) -> DogclfConfig:
        if self.autoscaling.min_instances > self.endpoint.initial_instance_count:
            raise ValueError(
                f"autoscaling.min_instances ({self.autoscaling.min_instances}) is above "
                f"endpoint.initial_instance_count ({self.endpoint.initial_instance_count}); "
                "raise the initial count or lower min_instances"
            )
        return self

    @property
    def names(self) -> ResourceNames:
        return ResourceNames(self.project, self.stage)

    @property
    def tags(self) -> dict[str, str]:
        """Tags on every resource: the two dogclf keys identify this project/stage."""
        return {**self.aws.tags, "dogclf:project": self.project, "dogclf:stage": self.stage}

    def s3_prefix(self, *parts: str) -> str:
        """s3://bucket/prefix/<parts> for this project/stage; needs aws.bucket."""
        if not self.aws.bucket:
            raise ConfigError(
                "aws.bucket is not set",
                "set [aws] bucket in dogclf.toml or DOGCLF_AWS__BUCKET",
            )
        # Two projects sharing a bucket get their own prefixes unless told otherwise, so one
        # project's `teardown --data` never reaches the other's objects.
        prefix = self.aws.prefix or self.project
        keys = "/".join(p.strip("/") for p in (prefix, self.stage, *parts) if p)
        return f"s3://{self.aws.bucket}/{keys}"


def _fit(name: str, limit: int) -> str:
    """Shorten `name` to `limit` characters, keeping it unique with a short hash."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('-')}-{digest}"


class ResourceNames:
    """Deterministic AWS names from project + stage, within each service's limits."""

    def __init__(self, project: str, stage: str) -> None:
        self.base = f"{project}-{stage}"

    @property
    def endpoint(self) -> str:  # SageMaker: 63, [a-zA-Z0-9](-*[a-zA-Z0-9])*
        return _fit(self.base, 63)

    def endpoint_config(self, model_hash: str) -> str:
        return _fit(f"{self.base}-cfg-{model_hash[:12]}", 63)

    def model(self, model_hash: str) -> str:
        return _fit(f"{self.base}-model-{model_hash[:12]}", 63)

    def training_job(self, stamp: str) -> str:
        return f"{_fit(self.base, 63 - len(stamp) - 1)}-{stamp}"

    def tuning_job(self, stamp: str) -> str:  # tuning job names: 32 characters at most
        return f"{_fit(self.base, 32 - len(stamp) - 1)}-{stamp}"

    @property
    def lambda_function(self) -> str:  # 64
        return _fit(f"{self.base}-predict", 64)

    @property
    def lambda_role(self) -> str:  # IAM role names: 64
        return _fit(f"{self.base}-lambda-role", 64)

    @property
    def lambda_policy(self) -> str:
        return _fit(f"{self.base}-invoke-endpoint", 128)

    @property
    def scaling_policy(self) -> str:
        return _fit(f"{self.base}-invocations-target", 256)

    def scalable_resource_id(self, variant: str) -> str:
        return f"endpoint/{self.endpoint}/variant/{variant}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.lambda_function}"

    def as_dict(self) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "endpoint_config": self.endpoint_config("<model-hash>"),
            "model": self.model("<model-hash>"),
            "training_job": self.training_job("<yyyymmdd-hhmmss>"),
            "tuning_job": self.tuning_job("<yymmdd-hhmm>"),
            "lambda_function": self.lambda_function,
            "lambda_role": self.lambda_role,
            "lambda_log_group": self.log_group,
            "scaling_policy": self.scaling_policy,
        }


# ---------------------------------------------------------------- loading


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """DOGCLF_SECTION__KEY=value -> {"section": {"key": value}}; JSON values are parsed."""
    nested: dict[str, Any] = {}
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var in NON_CONFIG_ENV:
            continue
        path = var[len(ENV_PREFIX) :].lower().split("__")
        try:
            value: Any = json.loads(raw) if raw[:1] in "[{" else raw
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{var} is not valid JSON: {exc.msg}", "quote lists as JSON, e.g. [32, 64]"
            ) from None
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"{var} clashes with another DOGCLF_ variable", "remove one of them"
                )
        node[path[-1]] = value
    return nested


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _field_path(loc: tuple[int | str, ...]) -> str:
    """("aws", "tags", "cost-center") -> aws.tags["cost-center"]; lists as hpo.batch_sizes[2]."""
    path = ""
    for depth, part in enumerate(p for p in loc if p != "[key]"):
        if isinstance(part, int):
            path += f"[{part}]"
        elif depth >= 2:  # below section.key: a dict key, as TOML and JSON would quote it
            path += "[" + json.dumps(part, ensure_ascii=False) + "]"
        else:
            path += ("." if path else "") + ("lambda" if part == "lambda_" else part)
    return path or "(top level)"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, each naming the field path (lambda.reserved_concurrency, ...)."""
    lines = []
    for err in exc.errors():
        loc = _field_path(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?); see `dogclf config show` for the valid keys"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be one of")
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def load_config(
    path: Path | str | None = None, environ: dict[str, str] | None = None
) -> DogclfConfig:
    """Read dogclf.toml (if present), apply DOGCLF_* overrides, validate.

    A missing file is fine when `path` was not given explicitly: defaults + env apply.
    """
    environ = dict(os.environ if environ is None else environ)
    explicit = path is not None or "DOGCLF_CONFIG" in environ
    file = Path(path or environ.get("DOGCLF_CONFIG") or DEFAULT_CONFIG_FILE)
    data: dict[str, Any] = {}
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{file}: not valid TOML: {exc}", "fix the syntax, or run `dogclf init --force`"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"{file}: cannot read: {exc.strerror}", "check the path and permissions"
            ) from None
    elif explicit:
        raise ConfigError(f"config file {file} does not exist", "create one with `dogclf init`")
    overrides = _env_overrides(environ)
    try:
        return DogclfConfig.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        source = str(file) + (" + DOGCLF_* env" if overrides else "")
        raise ConfigError(format_validation_error(exc, source), "fix the value(s) above") from None


def config_as_dict(cfg: DogclfConfig) -> dict[str, Any]:
    """Resolved values (as written in TOML) plus the derived resource names."""
    data = cfg.model_dump(mode="json", by_alias=True)
    data["names"] = cfg.names.as_dict()
    return data
