"""Following a training job's CloudWatch log streams (one per host) while it runs."""

from __future__ import annotations

from collections import deque
from typing import Any

from dogclf.aws.session import AwsContext, get_or_none

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class LogTail:
    """New lines since the last `poll()` from every stream named `<prefix>...`.

    Streams appear as hosts start, so each poll lists them again; each stream keeps its own
    forward token. The last `keep` lines stay available for an error message.
    """

    def __init__(
        self,
        ctx: AwsContext,
        stream_prefix: str,
        *,
        group: str = TRAINING_LOG_GROUP,
        keep: int = 20,
    ) -> None:
        self._logs = ctx.client("logs")
        self.group = group
        self.prefix = stream_prefix
        self._tokens: dict[str, str | None] = {}
        self.last: deque[str] = deque(maxlen=keep)

    def _streams(self) -> list[str]:
        found = get_or_none(
            f"list log streams of {self.group}",
            self._logs.describe_log_streams,
            logGroupName=self.group,
            logStreamNamePrefix=self.prefix,
        )
        return sorted(s["logStreamName"] for s in (found or {}).get("logStreams", []))

    def poll(self) -> list[str]:
        streams = self._streams()
        tag_hosts = len(streams) > 1
        lines: list[str] = []
        for stream in streams:
            host = stream.removeprefix(self.prefix).rsplit("-", 1)[0]  # "algo-1-1700000000"
            for message in self._read(stream):
                line = f"[{host}] {message}" if tag_hosts else message
                lines.append(line)
                self.last.append(line)
        return lines

    def _read(self, stream: str) -> list[str]:
        messages: list[str] = []
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": self.group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            token = self._tokens.get(stream)
            if token:
                kwargs["nextToken"] = token
            page = get_or_none(f"read log stream {stream}", self._logs.get_log_events, **kwargs)
            if page is None:
                return messages
            messages += [e["message"].rstrip("\n") for e in page.get("events", [])]
            self._tokens[stream] = page.get("nextForwardToken")
            if not page.get("events") or page.get("nextForwardToken") == token:
                return messages
