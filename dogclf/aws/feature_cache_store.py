"""The stage-wide feature cache: frozen-backbone features that later jobs receive.

A job's own cache rides on its CheckpointConfig S3 URI (`checkpoints/<job>/feature-cache/`),
which only the trials of one tuning job (and restarts of the same job) share. After a job
ends Completed, `train-sagemaker` copies each complete cache it built to the stage prefix
`checkpoints/feature-cache/<key>/` (files first, manifest.json last: a key without its
manifest is not a cache yet), and later jobs get that prefix as a read-only input channel,
`feature_cache` (the toolkit exports it as SM_CHANNEL_FEATURE_CACHE, which the training
core reads). Under checkpoints/ because it is derived data: `status` shows it and
`teardown` removes it with the checkpoints, without --data.

The channel is added only when the prefix holds a manifest: SageMaker fails a job whose
S3Prefix channel matches no object ("No S3 objects found under S3 URL").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dogclf.aws.artifacts import parse_s3_uri
from dogclf.aws.s3 import RemoteObject, bucket_exists, list_objects
from dogclf.aws.session import AwsContext, call
from dogclf.aws.training_jobs import s3_channel
from dogclf.model import feature_cache_layout as layout
from dogclf.model.feature_cache_layout import MANIFEST

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

CHANNEL = "feature_cache"  # SM_CHANNEL_FEATURE_CACHE (sagemaker_training: "channel_%s" upper)


def stage_uri(cfg: DogclfConfig) -> str:
    return cfg.s3_prefix("checkpoints", layout.FOLDER) + "/"


def _keys_with_manifest(objects: list[RemoteObject], prefix: str) -> set[str]:
    """`<prefix><key>/manifest.json` -> key (temp and stale folders never have one there)."""
    keys = set()
    for obj in objects:
        parts = obj.key.removeprefix(prefix).split("/")
        if len(parts) == 2 and parts[1] == MANIFEST and not layout.is_hidden(parts[0]):
            keys.add(parts[0])
    return keys


@dataclass
class StageCaches:
    """What the stage prefix holds: complete keys, and every object (for status)."""

    uri: str
    keys: set[str]
    objects: int
    size: int


def stage_caches(ctx: AwsContext, cfg: DogclfConfig) -> StageCaches:
    uri = stage_uri(cfg)
    bucket, prefix = parse_s3_uri(uri)
    if not bucket_exists(ctx, bucket):
        return StageCaches(uri, set(), 0, 0)
    objects = list(list_objects(ctx, bucket, prefix))
    size = sum(o.size for o in objects)
    return StageCaches(uri, _keys_with_manifest(objects, prefix), len(objects), size)


def channel(uri: str) -> dict[str, Any]:
    """The read-only input channel over the stage prefix (File mode: downloaded at start)."""
    return s3_channel(CHANNEL, uri)


def add_channel(request: dict[str, Any], channel: dict[str, Any]) -> None:
    """`channel` into a training request or a tuning request's training definition. After
    the request digest: a re-run that now finds a cache still follows its running twin."""
    shape = request.get("TrainingJobDefinition", request)
    shape["InputDataConfig"] = [*shape["InputDataConfig"], channel]


def plan_channel(ctx: AwsContext, cfg: DogclfConfig) -> tuple[dict[str, Any] | None, str | None]:
    """(the channel or None, the plan's one line saying which and why; None when the job
    uses no feature cache: nothing to say, the request is what it was)."""
    t = cfg.training
    if not (t.freeze_backbone and t.feature_cache):
        return None, None
    found = stage_caches(ctx, cfg)
    if not found.keys:
        return None, f"feature cache channel: not added ({found.uri} holds no complete cache yet)"
    count = len(found.keys)
    text = f"{count} cache(s), {found.size / 1e6:.1f} MB"
    return channel(found.uri), f"feature cache channel {CHANNEL}: {found.uri} ({text})"


def checkpoint_uri(description: dict[str, Any]) -> str | None:
    """The job's (or tuning job's training definition's) CheckpointConfig S3 URI."""
    config = description.get("CheckpointConfig") or (
        description.get("TrainingJobDefinition") or {}
    ).get("CheckpointConfig")
    return str(config["S3Uri"]) if config and config.get("S3Uri") else None


def promote(ctx: AwsContext, cfg: DogclfConfig, description: dict[str, Any]) -> list[str]:
    """Copy each complete cache under the job's checkpoint URI to the stage prefix, files
    first and manifest last; keys already there are skipped. Returns the keys copied."""
    uri = checkpoint_uri(description)
    if uri is None:
        return []
    bucket, source = parse_s3_uri(f"{uri.rstrip('/')}/{layout.FOLDER}/")
    target = parse_s3_uri(stage_uri(cfg))[1]
    objects = {o.key: o for o in list_objects(ctx, bucket, source)}
    there = _keys_with_manifest(list(list_objects(ctx, bucket, target)), target)
    s3, copied = ctx.client("s3"), []
    for key in sorted(_keys_with_manifest(list(objects.values()), source) - there):
        manifest = _read_manifest(ctx, bucket, f"{source}{key}/{MANIFEST}")
        sizes = layout.listed_sizes(manifest)
        found = {
            name: getattr(objects.get(f"{source}{key}/{name}"), "size", None) for name in sizes
        }
        if not layout.lists_every_split(manifest) or found != sizes:
            continue  # a partial upload: the manifest names files that are not all there
        for name in [*sorted(sizes), MANIFEST]:
            call(
                f"copy the feature cache {key[:12]} to s3://{bucket}/{target}",
                s3.copy_object,
                Bucket=bucket,
                Key=f"{target}{key}/{name}",
                CopySource={"Bucket": bucket, "Key": f"{source}{key}/{name}"},
            )
        copied.append(key)
    return copied


def _read_manifest(ctx: AwsContext, bucket: str, key: str) -> dict[str, Any]:
    body = call(f"read s3://{bucket}/{key}", ctx.client("s3").get_object, Bucket=bucket, Key=key)
    try:
        return dict(json.loads(body["Body"].read()))
    except ValueError:
        return {}
