"""`dogclf upload` as a library: the plan (bucket, files to upload, objects to delete) for a
checked dataset, then the sync it stands for (dogclf/aws/s3_sync.py does the transfers)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogclf.aws.s3 import plan_bucket
from dogclf.aws.s3_sync import (
    PartSizes,
    Progress,
    SyncPlan,
    SyncResult,
    local_files,
    plan_sync,
    run_sync,
)
from dogclf.aws.session import AwsContext
from dogclf.plan import Action, Plan

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig


@dataclass(frozen=True)
class UploadOptions:
    create_bucket: bool  # or aws.create_bucket in the config
    delete: bool  # objects under the prefix that are no longer local
    workers: int  # parallel transfers (and listings)


@dataclass
class DatasetUpload:
    """What `upload` will do: `plan` (shown, and applied for the bucket) and `sync`."""

    uri: str
    plan: Plan
    sync: SyncPlan
    parts: PartSizes
    workers: int

    def run(self, ctx: AwsContext, progress: Progress | None = None) -> SyncResult:
        """The objects (the plan's bucket step must have been applied first)."""
        return run_sync(ctx, self.sync, parts=self.parts, workers=self.workers, progress=progress)


def plan_dataset_upload(
    ctx: AwsContext,
    cfg: DogclfConfig,
    root: Path,
    files: list[Path],
    options: UploadOptions,
    *,
    size_text: Callable[[int], str],
    status: Callable[[str], AbstractContextManager[Any]] = lambda text: nullcontext(),
) -> DatasetUpload:
    """Plan the sync of `files` (under `root`) to the data prefix; `status(text)` wraps the
    one slow part, the listing of what S3 already has; `size_text` writes byte counts."""
    workers = options.workers
    uri = cfg.s3_prefix("data") + "/"
    bucket = str(cfg.aws.bucket)
    prefix = uri.removeprefix(f"s3://{bucket}/")
    plan = Plan(f"upload {root} -> {uri}")
    plan_bucket(plan, ctx, cfg, create=options.create_bucket or cfg.aws.create_bucket)
    parts = PartSizes.from_mb(cfg.data.multipart_threshold_mb)
    local = local_files(root, files, prefix)
    if any(s.action is Action.CREATE for s in plan.steps):  # a new bucket holds nothing yet
        sync = SyncPlan(bucket, prefix, to_upload=local)
    else:
        with status(f"comparing with {uri}"):
            sync = plan_sync(
                ctx, local, bucket, prefix, parts=parts, delete=options.delete, workers=workers
            )
    _add_sync_steps(plan, sync, size_text)
    return DatasetUpload(uri, plan, sync, parts, workers)


def _add_sync_steps(plan: Plan, sync: SyncPlan, size_text: Callable[[int], str]) -> None:
    """The objects as plan rows; the sync itself runs after the plan, with its own progress."""
    if sync.to_upload:
        plan.add(
            Action.CREATE,
            "s3 objects",
            sync.uri,
            f"upload {len(sync.to_upload)} files ({size_text(sync.upload_bytes)})",
        )
    if sync.unchanged or not sync.to_upload:
        plan.add(Action.NOOP, "s3 objects", sync.uri, f"{len(sync.unchanged)} files unchanged")
    if sync.to_delete:
        plan.add(
            Action.DELETE,
            "s3 objects",
            sync.uri,
            f"delete {len(sync.to_delete)} objects no longer local",
        )
