"""Model artifacts in S3 and the "latest model" pointer that lives beside them.

No local state file: `s3://bucket/prefix/stage/models/latest.json` says which
`model.tar.gz` `deploy`, `serve latest` and `status` mean, so a laptop and a CI runner
see the same thing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogclf.aws.session import AwsContext, aws_errors, get_or_none
from dogclf.errors import ConfigError, NotFoundError
from dogclf.model.dataset import SPLITS
from dogclf.plan import Action, Plan

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key); a clear error for anything else."""
    match = S3_URI.match(uri)
    if not match:
        raise ConfigError(f"{uri!r} is not an S3 URI", "write it as s3://bucket/key")
    return match["bucket"], match["key"] or ""


def head_object(ctx: AwsContext, uri: str) -> dict[str, Any] | None:
    """HeadObject of an s3:// URI: its metadata, or None when there is no such object."""
    bucket, key = parse_s3_uri(uri)
    found: dict[str, Any] | None = get_or_none(
        f"check {uri}", ctx.client("s3").head_object, Bucket=bucket, Key=key
    )
    return found


@dataclass
class LatestModel:
    model_data: str  # s3://.../model.tar.gz
    source: str  # "train-ec2", "train-sagemaker:<job name>", ...
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    metrics: dict[str, Any] = field(default_factory=dict)


def latest_pointer_uri(cfg: DogclfConfig) -> str:
    return cfg.s3_prefix("models", "latest.json")


def pointer_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the pointer keeps of a run's metrics: the headline figures (flat numbers, as a
    job's final metrics are, and the train/valid/test blocks). The history, the N x N test
    confusion counts and the settings stay in the artifact, where `dogclf report` reads them."""
    return {
        k: v
        for k, v in metrics.items()
        if k in SPLITS or (isinstance(v, int | float) and not isinstance(v, bool))
    }


def write_latest(ctx: AwsContext, cfg: DogclfConfig, latest: LatestModel) -> str:
    bucket, key = parse_s3_uri(latest_pointer_uri(cfg))
    latest = LatestModel(
        latest.model_data, latest.source, latest.created, pointer_metrics(latest.metrics)
    )
    with aws_errors(f"update the latest-model pointer s3://{bucket}/{key}"):
        ctx.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(asdict(latest), indent=2).encode(),
            ContentType="application/json",
        )
    return f"s3://{bucket}/{key}"


def read_latest(ctx: AwsContext, cfg: DogclfConfig) -> LatestModel | None:
    bucket, key = parse_s3_uri(latest_pointer_uri(cfg))
    obj = get_or_none(
        f"read the latest-model pointer s3://{bucket}/{key}",
        ctx.client("s3").get_object,
        Bucket=bucket,
        Key=key,
    )
    if obj is None:
        return None
    data = json.loads(obj["Body"].read())
    return LatestModel(**{k: v for k, v in data.items() if k in LatestModel.__dataclass_fields__})


def resolve_model_uri(ctx: AwsContext, cfg: DogclfConfig, model: str | None) -> str:
    """`None`/"latest" -> the pointer's model_data; an s3:// URI is checked and returned."""
    if model in (None, "latest"):
        latest = read_latest(ctx, cfg)
        if latest is None:
            raise NotFoundError(
                f"no trained model yet: {latest_pointer_uri(cfg)} does not exist",
                "run `dogclf train-sagemaker` or `dogclf train-ec2` first, or pass --model s3://...",
            )
        return latest.model_data
    assert model is not None
    if head_object(ctx, model) is None:
        raise NotFoundError(f"{model} does not exist", "check the URI with `aws s3 ls`")
    return model


def upload_file(ctx: AwsContext, path: Path, uri: str) -> str:
    bucket, key = parse_s3_uri(uri)
    with aws_errors(f"upload {path} to {uri}"):
        ctx.client("s3").upload_file(str(path), bucket, key)
    return uri


def download_file(ctx: AwsContext, uri: str, path: Path) -> Path:
    bucket, key = parse_s3_uri(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with aws_errors(f"download {uri}"):
        ctx.client("s3").download_file(bucket, key, str(path))
    return path


def publish_model(
    ctx: AwsContext,
    cfg: DogclfConfig,
    model_uri: str,
    *,
    source: str,
    metrics: dict[str, Any],
    tarball: Path | None = None,
) -> LatestModel:
    """Make `model_uri` the model `deploy` and `serve latest` mean: upload `tarball` there
    first when given (a SageMaker job has uploaded its own), then move the latest pointer."""
    if tarball is not None:
        upload_file(ctx, tarball, model_uri)
    latest = LatestModel(model_data=model_uri, source=source, metrics=metrics)
    write_latest(ctx, cfg, latest)
    return latest


def plan_publish(
    plan: Plan,
    ctx: AwsContext,
    cfg: DogclfConfig,
    *,
    tarball: Path,
    model_uri: str,
    source: str,
    label: str,
    metrics: Callable[[], dict[str, Any]],
    reuse: bool,
) -> None:
    """publish_model as two plan steps, the upload and the pointer, each a no-op when S3
    already has it. `reuse`: `tarball` is the one an earlier run made (not rebuilt now), so
    an object of its size is that upload; `metrics` is read when the pointer step runs."""
    head = head_object(ctx, model_uri)
    same = reuse and head is not None and int(head["ContentLength"]) == tarball.stat().st_size
    if same:
        plan.add(Action.NOOP, "s3 object", model_uri, "model.tar.gz already uploaded")
    else:
        plan.add(
            Action.UPDATE if head is not None else Action.CREATE,
            "s3 object",
            model_uri,
            "upload model.tar.gz",
            lambda: upload_file(ctx, tarball, model_uri),
        )
    pointer = latest_pointer_uri(cfg)
    latest = read_latest(ctx, cfg)
    if latest is not None and latest.model_data == model_uri and same:
        plan.add(Action.NOOP, "s3 object", pointer, f"latest already points to {label}")
        return
    plan.add(
        Action.UPDATE if latest is not None else Action.CREATE,
        "s3 object",
        pointer,
        f"point latest at {label}",
        lambda: publish_model(ctx, cfg, model_uri, source=source, metrics=metrics()).model_data,
    )
