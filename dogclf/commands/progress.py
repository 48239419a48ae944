"""One rich bar for S3 transfers (upload, train-ec2's data download): files, bytes, rate and
time left on stderr; it is the `dogclf.aws.s3_sync.Progress` the sync functions report to."""

from __future__ import annotations

from typing import Any


class TransferBar:
    """`with TransferBar("upload") as bar:` then pass `bar` as the transfer's progress."""

    def __init__(self, verb: str, *, transient: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from dogclf import render

        self._verb = verb
        self._progress = Progress(
            TextColumn(f"{verb} {{task.fields[files]}}/{{task.fields[total_files]}} files"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=render.err,
            transient=transient,
        )
        self._task: Any = None
        self._files = 0

    def __enter__(self) -> TransferBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, files: int, total_bytes: int) -> None:
        self._task = self._progress.add_task(
            self._verb, total=total_bytes, files=0, total_files=files
        )

    def advance(self, files: int, nbytes: int) -> None:
        self._files += files
        self._progress.update(self._task, advance=nbytes, files=self._files)
