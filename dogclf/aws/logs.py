"""CloudWatch Logs: following a training job's log streams (one per host) while it runs;
the log groups and streams SageMaker leaves behind, which teardown removes."""

from __future__ import annotations

import re
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from dogclf.aws.session import AwsContext, aws_errors, delete_step, deleter, get_or_none
from dogclf.plan import Action, Step

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

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


# ---------------------------------------------------------------- what teardown removes
# SageMaker writes both and neither expires: an endpoint's group outlives the endpoint,
# and the training group is shared by every job of the account (so only our streams go).
ENDPOINT_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"


def endpoint_log_group(endpoint: str) -> str:
    return ENDPOINT_LOG_GROUP_PREFIX + endpoint


def describe_log_group(ctx: AwsContext, name: str) -> dict[str, Any] | None:
    """The group named exactly `name` (storedBytes, retentionInDays), None if absent."""
    pages = ctx.client("logs").get_paginator("describe_log_groups")
    with aws_errors(f"describe log group {name}"):
        for page in pages.paginate(logGroupNamePrefix=name):
            for group in page.get("logGroups", []):
                if group["logGroupName"] == name:
                    return dict(group)
    return None


def endpoint_log_delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    """The endpoint's log group, after the endpoint (which would write to it again)."""
    name = endpoint_log_group(cfg.names.endpoint)
    if describe_log_group(ctx, name) is None:
        return []
    what = f"delete log group {name}"
    sm_logs = "the endpoint's container logs (never expire)"
    return [
        delete_step(
            "log group", name, sm_logs, what, ctx.client("logs").delete_log_group, logGroupName=name
        )
    ]


def training_stream_pattern(cfg: DogclfConfig) -> re.Pattern[str]:
    """Streams `<job>/algo-N-<ts>` of this project/stage's training jobs and tuning trials.

    Job names are a fitted base + a stamp (config.ResourceNames); a trial is its tuning job's
    name + `-NNN-<8 hex>`. The stamps pin the match, so "dogclf-dev" never takes
    "dogclf-dev2"'s or "dogclf-dev-b"'s streams."""
    training, tuning = _job_bases(cfg)
    return re.compile(
        rf"^(?:{re.escape(training)}-\d{{8}}-\d{{6}}"
        rf"|{re.escape(tuning)}-\d{{6}}-\d{{6}}-\d{{3}}-[0-9a-f]{{8}})/"
    )


# Stamps of the lengths training_jobs.job_stamp and tuning_jobs.tuning_stamp make
# ("%Y%m%d-%H%M%S", "%y%m%d-%H%M%S"): ResourceNames fits the base to what the stamp leaves.
_TRAINING_STAMP, _TUNING_STAMP = "00000000-000000", "000000-000000"


def _job_bases(cfg: DogclfConfig) -> tuple[str, str]:
    """The fitted name parts before the stamp, for training jobs and for tuning jobs."""
    training = cfg.names.training_job(_TRAINING_STAMP)[: -len(_TRAINING_STAMP) - 1]
    tuning = cfg.names.tuning_job(_TUNING_STAMP)[: -len(_TUNING_STAMP) - 1]
    return training, tuning


def training_streams(ctx: AwsContext, cfg: DogclfConfig) -> list[dict[str, Any]]:
    """This project/stage's streams in the shared training log group ([] if it is absent)."""
    training, tuning = _job_bases(cfg)
    same = [a == b for a, b in zip(training, tuning, strict=False)] + [False]
    prefix = training[: same.index(False)]  # the part both kinds of job name start with
    pages = ctx.client("logs").get_paginator("describe_log_streams")

    def listed() -> list[dict[str, Any]]:
        return [
            dict(s)
            for page in pages.paginate(logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=prefix)
            for s in page.get("logStreams", [])
        ]

    streams = get_or_none(f"list log streams of {TRAINING_LOG_GROUP}", listed) or []
    pattern = training_stream_pattern(cfg)
    ours = [s for s in streams if pattern.match(s["logStreamName"])]
    return sorted(ours, key=lambda s: str(s["logStreamName"]))


def _delete_streams(ctx: AwsContext, names: list[str]) -> None:
    logs = ctx.client("logs")
    for name in names:
        deleter(
            f"delete log stream {name}",
            logs.delete_log_stream,
            logGroupName=TRAINING_LOG_GROUP,
            logStreamName=name,
        )()


def training_log_delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    """One step for every stream of ours; the group stays (other projects write there)."""
    names = [s["logStreamName"] for s in training_streams(ctx, cfg)]
    if not names:
        return []
    jobs = len({n.split("/", 1)[0] for n in names})
    return [
        Step(
            Action.DELETE,
            "log streams",
            f"{TRAINING_LOG_GROUP} ({cfg.names.base} jobs)",
            f"{len(names)} streams of {jobs} training job(s); the shared group stays",
            partial(_delete_streams, ctx, names),
        )
    ]
