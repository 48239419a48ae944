"""SageMaker training jobs: the CreateTrainingJob request, the source upload, waiting.

Why plain boto3 requests rather than the SDK's ModelTrainer (both were run against the
emulator; the SDK's sources and open issues were read, see docs/decisions.md):
- ModelTrainer (SDK v3) does not use the PyTorch container's `sagemaker_program` contract:
  it uploads its own driver scripts per job (an `sm_drivers` channel, ~25 files including
  the SDK's __pycache__) and replaces the entry point with `/bin/bash -c sm_train.sh`. The
  job would then differ from what `train-sagemaker --local` rehearses.
- It names jobs itself (base name + timestamp) and stages code under a per-job prefix, so
  an unchanged source is uploaded again every run; we upload a content-addressed bundle.
- Its HyperparameterTuner rebuilds the training definition and has lost ModelTrainer's
  channels / container settings before (aws/sagemaker-python-sdk#5508, fixed by #5516;
  #5184 for container mode is open).
- It calls iam:SimulatePrincipalPolicy (one more permission; moto lacks it) and adds ~3 s
  of imports. A dict we build is also what `--dry-run` prints and the tests read back.
The SDK still resolves image URIs (dogclf/aws/images.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dogclf.aws.artifacts import LatestModel, head_object, parse_s3_uri, publish_model
from dogclf.aws.instance_gpus import wants_torchrun
from dogclf.aws.jobs_in_flight import TRAINING, in_flight
from dogclf.aws.jobs_in_flight import JobKind as InFlightKind
from dogclf.aws.logs import LogTail
from dogclf.aws.polling import wait_until
from dogclf.aws.session import AwsContext, call, get_or_none, tag_list
from dogclf.aws.source_bundle import ENTRY_SCRIPT, build_bundle
from dogclf.errors import NotFoundError, ResourceFailedError
from dogclf.model.dataset import SPLITS
from dogclf.plan import Action, Plan

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

CHANNELS = SPLITS  # one input channel per split
CHECKPOINT_DIR = "/opt/ml/checkpoints"
VOLUME_GB = 30
FINAL = {"Completed", "Failed", "Stopped"}
REQUEST_TAG = "dogclf:request"  # digest of the request: a re-run follows the running twin


def job_stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def data_channels(cfg: DogclfConfig) -> dict[str, str]:
    return {name: cfg.s3_prefix("data", name) + "/" for name in CHANNELS}


def check_data(ctx: AwsContext, cfg: DogclfConfig) -> None:
    """Each channel's prefix holds at least one object (one cheap list call each)."""
    s3 = ctx.client("s3")
    missing = []
    for name, uri in data_channels(cfg).items():
        bucket, prefix = parse_s3_uri(uri)
        page = get_or_none(
            f"list {uri}", s3.list_objects_v2, Bucket=bucket, Prefix=prefix, MaxKeys=1
        )
        if not page or not page.get("KeyCount"):
            missing.append(name)
    if missing:
        raise NotFoundError(
            f"no training data under {cfg.s3_prefix('data')}/ for: {', '.join(missing)}",
            "run `dogclf upload DATA_DIR` first",
        )


def plan_source(plan: Plan, ctx: AwsContext, cfg: DogclfConfig) -> str:
    """Add the code bundle's step (upload or no-op); returns its S3 URI."""
    from dogclf.model.hyperparameters import ENTRY_MODULE

    bundle = build_bundle(ENTRY_MODULE)
    uri = cfg.s3_prefix("code", bundle.digest, "sourcedir.tar.gz")
    bucket, key = parse_s3_uri(uri)
    s3 = ctx.client("s3")
    if head_object(ctx, uri) is not None:
        plan.add(Action.NOOP, "training code", uri, f"{len(bundle.files)} files, unchanged")
    else:
        plan.add(
            Action.CREATE,
            "training code",
            uri,
            f"upload {len(bundle.files)} files ({len(bundle.data) // 1024} KiB)",
            lambda: call(
                f"upload {uri}",
                s3.put_object,
                Bucket=bucket,
                Key=key,
                Body=bundle.data,
                ContentType="application/gzip",
            ),
        )
    return uri


def program_hyperparameters(cfg: DogclfConfig) -> dict[str, str]:
    """The training program's hyperparameters, JSON-encoded as the SageMaker SDK sends them."""
    from dogclf.model.hyperparameters import encode_hyperparameters, hyperparameter_values

    return encode_hyperparameters(hyperparameter_values(cfg.training))


def framework_hyperparameters(
    cfg: DogclfConfig, source_uri: str, region: str, job_name: str
) -> dict[str, str]:
    """What the SageMaker PyTorch container reads to find and launch the entry point
    (JSON-encoded like the rest: sagemaker_program is `"dogclf_train.py"`)."""
    from dogclf.model.hyperparameters import TORCH_DISTRIBUTED, encode_hyperparameters

    params: dict[str, Any] = {
        "sagemaker_program": ENTRY_SCRIPT,
        "sagemaker_submit_directory": source_uri,
        "sagemaker_region": region,
        "sagemaker_container_log_level": 20,
        "sagemaker_job_name": job_name,
    }
    if wants_torchrun(cfg.training.instance_type, cfg.training.instance_count):
        params[TORCH_DISTRIBUTED] = True  # torchrun: one process per GPU on every host
    return encode_hyperparameters(params)


def s3_channel(name: str, uri: str) -> dict[str, Any]:
    """A File-mode channel over an S3 prefix, every object on every host (the data: the
    DistributedSampler splits the work; the feature cache: each host loads it whole)."""
    source = {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
    return {"ChannelName": name, "DataSource": {"S3DataSource": source}, "InputMode": "File"}


def input_channels(cfg: DogclfConfig) -> list[dict[str, Any]]:
    return [s3_channel(name, uri) for name, uri in data_channels(cfg).items()]


def job_shape(cfg: DogclfConfig, checkpoint_name: str) -> dict[str, Any]:
    """The parts a training job and a tuning job's training definition share."""
    from dogclf.model.metrics import METRIC_DEFINITIONS

    t = cfg.training
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": t.max_run}
    shape: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": "",  # filled in by the caller
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
        },
        "InputDataConfig": input_channels(cfg),
        "OutputDataConfig": {"S3OutputPath": cfg.s3_prefix("models")},
        "ResourceConfig": {
            "InstanceType": t.instance_type,
            "InstanceCount": t.instance_count,
            "VolumeSizeInGB": VOLUME_GB,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": t.spot,
    }
    if t.spot:
        assert t.max_wait is not None  # config validation guarantees it
        stopping["MaxWaitTimeInSeconds"] = t.max_wait
    if t.spot or uses_feature_cache(cfg):
        # Spot interruptions resume from here: the core saves its checkpoint in LocalPath.
        # The frozen backbone's feature cache lives there too (LocalPath/feature-cache/):
        # SageMaker downloads the S3 URI at the start of every job that names it, and a
        # tuning job's trials all name the tuning job's, so later trials reuse the cache.
        shape["CheckpointConfig"] = {
            "S3Uri": cfg.s3_prefix("checkpoints", checkpoint_name) + "/",
            "LocalPath": CHECKPOINT_DIR,
        }
    return shape


def uses_feature_cache(cfg: DogclfConfig) -> bool:
    return cfg.training.freeze_backbone and cfg.training.feature_cache


def training_request(
    cfg: DogclfConfig, *, name: str, image: str, source_uri: str, role: str, region: str
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": role,
        "HyperParameters": {
            **program_hyperparameters(cfg),
            **framework_hyperparameters(cfg, source_uri, region, name),
        },
        **job_shape(cfg, name),
        "Tags": tag_list(cfg),
    }
    request["AlgorithmSpecification"]["TrainingImage"] = image
    return tag_digest(request)


def request_digest(request: dict[str, Any], name_key: str = "TrainingJobName") -> str:
    """The request without what differs between two runs of the same config (its name)."""
    name = request.get(name_key, "")
    text = json.dumps(
        {k: v for k, v in request.items() if k not in (name_key, "Tags")}, sort_keys=True
    )
    return hashlib.sha256(text.replace(name, "<job>").encode()).hexdigest()[:16]


def tag_digest(request: dict[str, Any], name_key: str = "TrainingJobName") -> dict[str, Any]:
    """`request` with its digest tag added (what find_running_twin looks for)."""
    request["Tags"].append({"Key": REQUEST_TAG, "Value": request_digest(request, name_key)})
    return request


def find_running_twin(
    ctx: AwsContext, cfg: DogclfConfig, digest: str, kind: InFlightKind = TRAINING
) -> str | None:
    """An InProgress job (of `kind`) of this project/stage started from the same request."""
    sm = ctx.client("sagemaker")
    for job in in_flight(ctx, cfg, kind):
        if job[kind.status_key] != "InProgress":
            continue
        tags = call("read job tags", sm.list_tags, ResourceArn=job[kind.arn_key])
        if any(t["Key"] == REQUEST_TAG and t["Value"] == digest for t in tags.get("Tags", [])):
            return str(job[kind.name_key])
    return None


def create_training_job(ctx: AwsContext, request: dict[str, Any]) -> str:
    call(
        f"create training job {request['TrainingJobName']}",
        ctx.client("sagemaker").create_training_job,
        **request,
    )
    return str(request["TrainingJobName"])


def sagemaker_describe(ctx: AwsContext, what: str, operation: str, **key: str) -> dict[str, Any]:
    """One SageMaker Describe* call (`operation` is the client method) as a plain dict."""
    return dict(call(f"describe {what}", getattr(ctx.client("sagemaker"), operation), **key))


def describe_training_job(ctx: AwsContext, name: str) -> dict[str, Any]:
    return sagemaker_describe(
        ctx, f"training job {name}", "describe_training_job", TrainingJobName=name
    )


def final_metrics(description: dict[str, Any]) -> dict[str, float]:
    return {m["MetricName"]: float(m["Value"]) for m in description.get("FinalMetricDataList", [])}


@dataclass
class JobWatch:
    """Callbacks while a job runs: each new log line, each status change."""

    on_log: Callable[[str], None] = lambda line: None
    on_status: Callable[[str], None] = lambda text: None
    tail: LogTail | None = field(default=None, repr=False)


def job_status_text(description: dict[str, Any]) -> str:
    status = description["TrainingJobStatus"]
    secondary = description.get("SecondaryStatus")
    return f"{status} ({secondary})" if secondary and secondary != status else status


@dataclass(frozen=True)
class JobKind:
    """What following one kind of SageMaker job takes: how to describe it, where its status
    is, and the one-line status text that is reported when it changes."""

    label: str  # "training job"
    describe: Callable[[AwsContext, str], dict[str, Any]]
    status_key: str
    status_text: Callable[[dict[str, Any]], str]


def wait_job(
    ctx: AwsContext,
    name: str,
    kind: JobKind,
    *,
    poll_interval: float,
    on_status: Callable[[str], None],
    on_poll: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Poll until Completed/Failed/Stopped, telling `on_status` each new status text."""
    last = [""]

    def poll(description: dict[str, Any]) -> None:
        text = kind.status_text(description)
        if text != last[0]:
            last[0] = text
            on_status(text)
        on_poll()

    return wait_until(
        lambda: kind.describe(ctx, name),
        lambda d: str(d[kind.status_key]),
        FINAL,
        what=f"{kind.label} {name}",
        poll_interval=poll_interval,
        on_poll=poll,
    )


TRAINING_JOB = JobKind("training job", describe_training_job, "TrainingJobStatus", job_status_text)


def wait_training_job(
    ctx: AwsContext,
    name: str,
    *,
    poll_interval: float = 30.0,
    watch: JobWatch | None = None,
    logs: bool = True,
) -> dict[str, Any]:
    """Poll until Completed/Failed/Stopped, streaming log lines; returns the description."""
    watch = watch or JobWatch()
    tail = watch.tail = LogTail(ctx, f"{name}/") if logs else None

    def stream_logs() -> None:
        for line in tail.poll() if tail is not None else ():
            watch.on_log(line)

    return wait_job(
        ctx,
        name,
        TRAINING_JOB,
        poll_interval=poll_interval,
        on_status=watch.on_status,
        on_poll=stream_logs,
    )


def raise_if_failed(description: dict[str, Any], last_lines: list[str]) -> None:
    status = description["TrainingJobStatus"]
    if status == "Completed":
        return
    name = description["TrainingJobName"]
    reason = description.get("FailureReason") or f"the job ended {status}"
    tail = "\n".join(["last log lines:", *last_lines[-10:]]) if last_lines else ""
    raise ResourceFailedError(
        f"training job {name} {status.lower()}: {reason}" + (f"\n{tail}" if tail else ""),
        f"full log: CloudWatch group /aws/sagemaker/TrainingJobs, streams {name}/*",
    )


def record_latest(
    ctx: AwsContext, cfg: DogclfConfig, description: dict[str, Any], source: str
) -> LatestModel:
    """Point models/latest.json at this job's model.tar.gz (SageMaker uploaded it) and
    final metrics."""
    return publish_model(
        ctx,
        cfg,
        description["ModelArtifacts"]["S3ModelArtifacts"],
        source=source,
        metrics=final_metrics(description),
    )
