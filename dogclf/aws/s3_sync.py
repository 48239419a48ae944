"""Parallel, resumable sync of a local folder to an S3 prefix.

Skipping unchanged files costs one listing of the prefix (ListObjectsV2, 1,000 keys a call,
first-level folders side by side; no HEAD per file, no download): an object is unchanged
when its size matches and its ETag matches the local file's MD5 (single-part) or the MD5
of the part MD5s with our part size (multipart).
Both hold for SSE-S3 objects, the encryption `upload --create-bucket` sets. An interrupted
sync leaves whole objects only (S3 writes are atomic), so a re-run uploads just the rest.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dogclf.aws.s3 import delete_keys, list_objects_parallel
from dogclf.aws.session import AwsContext, aws_errors
from dogclf.errors import AwsError
from dogclf.units import MiB

READ_BLOCK = 1 * MiB


@dataclass(frozen=True)
class LocalFile:
    path: Path
    key: str
    size: int


@dataclass
class SyncPlan:
    bucket: str
    prefix: str  # key prefix, ending in "/"
    to_upload: list[LocalFile] = field(default_factory=list)
    unchanged: list[LocalFile] = field(default_factory=list)
    to_delete: list[str] = field(default_factory=list)

    @property
    def upload_bytes(self) -> int:
        return sum(f.size for f in self.to_upload)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class SyncResult:
    uploaded: int
    uploaded_bytes: int
    unchanged: int
    deleted: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


class Progress(Protocol):
    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, files: int, nbytes: int) -> None: ...


@dataclass(frozen=True)
class PartSizes:
    """Files of `threshold` bytes or more go up in parts of `chunk` bytes (S3's ETag rule)."""

    threshold: int
    chunk: int

    @classmethod
    def from_mb(cls, threshold_mb: int) -> PartSizes:
        return cls(threshold_mb * MiB, threshold_mb * MiB)

    def chunk_for(self, size: int) -> int:
        from s3transfer.utils import ChunksizeAdjuster

        return int(ChunksizeAdjuster().adjust_chunksize(self.chunk, size))

    def transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=self.threshold, multipart_chunksize=self.chunk)


def local_etag(path: Path, size: int, parts: PartSizes) -> str:
    """The ETag S3 gives this file when uploaded our way, computed without uploading it."""
    if size < parts.threshold:
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as fh:
            while block := fh.read(READ_BLOCK):
                digest.update(block)
        return digest.hexdigest()
    chunk = parts.chunk_for(size)
    part_digests = []
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            part_digests.append(hashlib.md5(block, usedforsecurity=False).digest())
    combined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(part_digests)}"


def local_files(root: Path, files: list[Path], prefix: str) -> list[LocalFile]:
    """Map files under `root` to keys under `prefix` ("a/b/" + "train/001.X/1.jpg")."""
    return [
        LocalFile(path, prefix + path.relative_to(root).as_posix(), path.stat().st_size)
        for path in sorted(files)
    ]


def plan_sync(
    ctx: AwsContext,
    files: list[LocalFile],
    bucket: str,
    prefix: str,
    *,
    parts: PartSizes,
    delete: bool = False,
    workers: int = 16,
) -> SyncPlan:
    """Compare local files against one listing of the prefix; nothing is written."""
    remote = {obj.key: obj for obj in list_objects_parallel(ctx, bucket, prefix, workers)}
    plan = SyncPlan(bucket, prefix)
    same_size = [f for f in files if f.key in remote and remote[f.key].size == f.size]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # hashlib releases the GIL
        etags = dict(
            zip(
                [f.key for f in same_size],
                pool.map(lambda f: local_etag(f.path, f.size, parts), same_size),
                strict=True,
            )
        )
    for f in files:
        if f.key in etags and etags[f.key] == remote[f.key].etag:
            plan.unchanged.append(f)
        else:
            plan.to_upload.append(f)
    if delete:
        wanted = {f.key for f in files}
        plan.to_delete = sorted(k for k in remote if k not in wanted)
    return plan


def _uploader(
    ctx: AwsContext, bucket: str, parts: PartSizes, workers: int
) -> Callable[[LocalFile], None]:
    # One connection per worker thread, or urllib3 drops and reopens them.
    s3 = ctx.client("s3", max_pool_connections=max(workers, 10))
    config = parts.transfer_config()

    def upload(f: LocalFile) -> None:
        content_type = mimetypes.guess_type(f.path.name)[0] or "application/octet-stream"
        with aws_errors(f"upload {f.path} to s3://{bucket}/{f.key}"):
            if f.size < parts.threshold:
                # One PUT with Content-MD5: S3 rejects a body that changed on the way.
                body = f.path.read_bytes()
                md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest())
                s3.put_object(
                    Bucket=bucket,
                    Key=f.key,
                    Body=body,
                    ContentMD5=md5.decode(),
                    ContentType=content_type,
                )
            else:
                s3.upload_file(
                    str(f.path),
                    bucket,
                    f.key,
                    ExtraArgs={"ContentType": content_type},
                    Config=config,
                )

    return upload


def run_sync(
    ctx: AwsContext,
    plan: SyncPlan,
    *,
    parts: PartSizes,
    workers: int = 16,
    progress: Progress | None = None,
    on_uploaded: Callable[[LocalFile], None] | None = None,
) -> SyncResult:
    """Upload what the plan says, `workers` files at a time; then delete what it says.

    `on_uploaded` runs in the calling thread after each finished file; if it raises (or
    Ctrl-C arrives), files not yet started are cancelled, the ones in flight finish, and
    the error propagates: a re-run then uploads only what is missing.
    """
    started = time.perf_counter()
    upload = _uploader(ctx, plan.bucket, parts, workers)
    if progress is not None:
        progress.start(len(plan.to_upload), plan.upload_bytes)
    done = done_bytes = 0
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dogclf-upload")
    futures: dict[Future[None], LocalFile] = {pool.submit(upload, f): f for f in plan.to_upload}
    try:
        for fut in as_completed(futures):
            fut.result()  # a worker's AwsError surfaces here
            f = futures[fut]
            done, done_bytes = done + 1, done_bytes + f.size
            if progress is not None:
                progress.advance(1, f.size)
            if on_uploaded is not None:
                on_uploaded(f)
    except AwsError as exc:
        raise AwsError(
            f"{exc.message} (after {done} of {len(plan.to_upload)} files)",
            (exc.hint or "") + "; a re-run uploads only the files still missing",
        ) from exc
    finally:
        for fut in futures:
            fut.cancel()
        pool.shutdown(wait=True)
    deleted = delete_keys(ctx, plan.bucket, plan.to_delete) if plan.to_delete else 0
    return SyncResult(done, done_bytes, len(plan.unchanged), deleted, time.perf_counter() - started)


@dataclass(frozen=True)
class RemoteFile:
    key: str
    size: int
    path: Path  # where it lands


@dataclass
class DownloadPlan:
    """What `download_prefix` would fetch: the objects missing here (or of another size)."""

    bucket: str
    to_fetch: list[RemoteFile] = field(default_factory=list)
    present: int = 0  # files already here with the right size

    @property
    def fetch_bytes(self) -> int:
        return sum(f.size for f in self.to_fetch)


def plan_download(ctx: AwsContext, uri: str, target: Path, *, workers: int = 16) -> DownloadPlan:
    """Every object under `uri` mapped into `target` (same relative paths), folder markers
    skipped; files already there with the same size count as present."""
    from dogclf.aws.artifacts import parse_s3_uri

    bucket, prefix = parse_s3_uri(uri)
    plan = DownloadPlan(bucket)
    for obj in list_objects_parallel(ctx, bucket, prefix, workers):
        relative = obj.key.removeprefix(prefix)
        if not relative or relative.endswith("/"):
            continue
        path = target / relative
        if path.is_file() and path.stat().st_size == obj.size:
            plan.present += 1
        else:
            plan.to_fetch.append(RemoteFile(obj.key, obj.size, path))
    return plan


def run_download(
    ctx: AwsContext,
    plan: DownloadPlan,
    *,
    workers: int = 16,
    progress: Progress | None = None,
) -> int:
    """Fetch what the plan says, `workers` at a time; returns how many files. Each lands
    under a hidden `.NAME.part` first, so an interrupted run never leaves a truncated file
    that a re-run would take for complete. `progress` hears of each file in the calling thread."""
    s3 = ctx.client("s3", max_pool_connections=max(workers, 10))

    def fetch(item: RemoteFile) -> RemoteFile:
        item.path.parent.mkdir(parents=True, exist_ok=True)
        partial = item.path.with_name(f".{item.path.name}.part")
        with aws_errors(f"download s3://{plan.bucket}/{item.key}"):
            s3.download_file(plan.bucket, item.key, str(partial))
        partial.replace(item.path)
        return item

    if progress is not None:
        progress.start(len(plan.to_fetch), plan.fetch_bytes)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dogclf-download") as pool:
        futures = [pool.submit(fetch, item) for item in plan.to_fetch]
        try:
            for fut in as_completed(futures):
                fetched = fut.result()
                if progress is not None:
                    progress.advance(1, fetched.size)
        finally:
            for fut in futures:
                fut.cancel()
    return len(plan.to_fetch)


def download_prefix(ctx: AwsContext, uri: str, target: Path, *, workers: int = 16) -> int:
    """Every object under `uri` into `target` (same relative paths); files already there
    with the same size are kept. Returns how many files were downloaded."""
    plan = plan_download(ctx, uri, target, workers=workers)
    return run_download(ctx, plan, workers=workers)
