"""What moto lacks for dogclf, added to the in-process moto server in one place.

Written against moto 5.2.5 (pinned in pyproject's `emulator` extra); `install()` refuses
other versions rather than patching internals that may have moved. Each patch adds a
missing API operation to moto's response/backend classes; nothing here changes what moto
already implements. Used by the test harness and by `dogclf demo`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

MOTO_VERSION = "5.2.5"

_installed = False
# Each patch is a zero-argument function that adds one missing operation.
PATCHES: list[Callable[[], None]] = []


def patch(fn: Callable[[], None]) -> Callable[[], None]:
    PATCHES.append(fn)
    return fn


def install() -> None:
    """Apply every patch once per process."""
    global _installed
    if _installed:
        return
    found = version("moto")
    if found != MOTO_VERSION:
        from dogclf.errors import DogclfError

        raise DogclfError(
            f"the emulator extension was written for moto {MOTO_VERSION}, found {found}",
            f"pip install 'moto[server]=={MOTO_VERSION}'",
        )
    for fn in PATCHES:
        fn()
    _installed = True


def post_json(emulator_url: str, path: str, body: dict[str, Any]) -> None:
    """POST a JSON body to one of the emulator's /moto-api routes (client side)."""
    import json
    import urllib.request

    req = urllib.request.Request(emulator_url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


# ================================================================ SageMaker (control plane)
# moto 5.2.5's SageMaker jumps every job and endpoint straight to its final status, lacks
# UpdateEndpoint / StopTrainingJob / StopHyperParameterTuningJob /
# ListTrainingJobsForHyperParameterTuningJob, overwrites a training job's MetricDefinitions
# with its own sample, and answers a tuning job with a fixed fake "best job". The patches
# below add those operations and make a tuning job start real (emulated) training jobs.
#
# Scripted lifecycles, so tests can reach in-flight and Failed states over HTTP:
#   POST /moto-api/dogclf/sagemaker/script
#   {"kind": "training-job" | "tuning-job" | "endpoint", "name_prefix": "dogclf-dev",
#    "statuses": ["InProgress", "Failed"], "failure_reason": "...",
#    "log_lines": ["..."], "metrics": {"valid_accuracy": 0.91},
#    "account_id": "123456789012", "region": "us-east-1"}
# The next resource of that kind created (or endpoint updated) whose name starts with
# name_prefix takes the script: it starts in statuses[0] and moves one status per Describe
# call, staying in the last one. A final "Failed" sets FailureReason; for an endpoint
# *update* it rolls back like AWS (InService on the old config, FailureReason set).
# log_lines go to CloudWatch Logs as the job's container output; metrics become its
# FinalMetricDataList. Scripts live on the moto backend, so /moto-api/reset forgets them.
# UpdateEndpoint also does what AWS does with auto-scaling: it refuses to change the
# instance type of a variant registered as a scalable target, and honours
# RetainAllVariantProperties (same-named variants keep their instance counts).

SAGEMAKER_SCRIPT_PATH = "/moto-api/dogclf/sagemaker/script"
_SCRIPT_KINDS = ("training-job", "tuning-job", "endpoint")
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def script_sagemaker(
    emulator_url: str,
    kind: str,
    name_prefix: str,
    statuses: list[str],
    *,
    failure_reason: str | None = None,
    log_lines: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    region: str = "us-east-1",
) -> None:
    """Client side of the script route (tests, demo): one POST over HTTP."""
    post_json(
        emulator_url,
        SAGEMAKER_SCRIPT_PATH,
        {
            "kind": kind,
            "name_prefix": name_prefix,
            "statuses": statuses,
            "failure_reason": failure_reason,
            "log_lines": log_lines or [],
            "metrics": metrics or {},
            "region": region,
        },
    )


def _sm_state(backend: Any) -> dict[str, Any]:
    """Pending scripts and the ones attached to a resource, kept on the moto backend."""
    state: dict[str, Any] = backend.__dict__.setdefault(
        "_dogclf_scripts", {"pending": [], "active": {}}
    )
    return state


def _take_script(backend: Any, kind: str, name: str) -> dict[str, Any] | None:
    state = _sm_state(backend)
    for script in state["pending"]:
        if script["kind"] == kind and name.startswith(script["name_prefix"]):
            state["pending"].remove(script)
            script = {**script, "step": 0, "fresh": True}
            state["active"][(kind, name)] = script
            return script
    return None


def _now() -> Any:
    from moto.core.utils import utcnow

    return utcnow()


def _write_job_logs(backend: Any, job_name: str, lines: list[str], *, host: str = "algo-1") -> None:
    """The container's stdout as CloudWatch Logs has it: stream `<job>/<host>-<start>`."""
    if not lines:
        return
    import time

    from moto.logs.models import logs_backends

    logs = logs_backends[backend.account_id][backend.region_name]
    if TRAINING_LOG_GROUP not in logs.groups:
        logs.create_log_group(TRAINING_LOG_GROUP, tags={})
    # One stream per host for the job's whole run: named by when the job was created.
    stamp = int(backend.training_jobs[job_name].creation_time.timestamp())
    stream = f"{job_name}/{host}-{stamp}"
    if stream not in logs.groups[TRAINING_LOG_GROUP].streams:
        logs.create_log_stream(TRAINING_LOG_GROUP, stream)
    start = int(time.time() * 1000)
    events = [{"timestamp": start + i, "message": line} for i, line in enumerate(lines)]
    logs.put_log_events(TRAINING_LOG_GROUP, stream, events)


def _set_training_status(job: Any, status: str, reason: str | None) -> None:
    job.training_job_status = status
    job.secondary_status = {"InProgress": "Training"}.get(status, status)
    job.last_modified_time = _now()
    if status == "InProgress":
        job.training_end_time = None
    else:
        job.training_end_time = _now()
    if status == "Failed":
        job.failure_reason = reason or "AlgorithmError: the training script failed"


def _set_final_metrics(job: Any, metrics: dict[str, float]) -> None:
    if metrics:
        job.final_metric_data_list = [
            {"MetricName": k, "Value": float(v), "Timestamp": _now()} for k, v in metrics.items()
        ]


def _advance(backend: Any, kind: str, name: str) -> None:
    """One Describe call = one step along the resource's script."""
    script = _sm_state(backend)["active"].get((kind, name))
    if script is None:
        return
    if script.pop("fresh", False):  # the first Describe sees the status it started in
        return
    statuses = script["statuses"]
    script["step"] = min(script["step"] + 1, len(statuses) - 1)
    _apply_status(backend, kind, name, script, statuses[script["step"]])


def _apply_status(backend: Any, kind: str, name: str, script: dict[str, Any], status: str) -> None:
    reason = script.get("failure_reason")
    if kind == "training-job" and name in backend.training_jobs:
        _set_training_status(backend.training_jobs[name], status, reason)
    elif kind == "tuning-job" and name in backend.hyper_parameter_tuning_jobs:
        job = backend.hyper_parameter_tuning_jobs[name]
        job.hyper_parameter_tuning_job_status = status
        if status == "Failed":
            job.failure_reason = reason or "No training job succeeded"
    elif kind == "endpoint" and name in backend.endpoints:
        endpoint = backend.endpoints[name]
        target = script.get("target_config")
        if target is None:  # a create
            endpoint.endpoint_status = status
            if status == "Failed":
                endpoint.failure_reason = reason or "the primary container did not pass ping"
        elif status == "Failed":  # an update that fails rolls back, as AWS does
            endpoint.endpoint_status = "InService"
            endpoint.failure_reason = reason or "the new variant did not pass ping"
        elif status == "InService":
            _switch_endpoint_config(backend, endpoint, target, bool(script.get("retain")))
        else:
            endpoint.endpoint_status = status
        endpoint.last_modified_time = _now()


def _switch_endpoint_config(
    backend: Any, endpoint: Any, config_name: str, retain: bool = False
) -> None:
    config = backend.endpoint_configs[config_name]
    before = {v["VariantName"]: v for v in endpoint.production_variants}
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
    if retain:  # RetainAllVariantProperties: same-named variants keep count and weight
        for variant in endpoint.production_variants:
            old = before.get(variant["VariantName"], {})
            for key in ("DesiredInstanceCount", "CurrentInstanceCount"):
                if key in old:
                    variant[key] = old[key]
    endpoint.endpoint_status = "InService"
    endpoint.failure_reason = None


def _script_route(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    import json

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemaker.models import sagemaker_backends

    if request.method != "POST":
        return 405, {}, json.dumps({"Error": "POST a script"})
    body = json.loads(request.data or b"{}")
    if body.get("kind") not in _SCRIPT_KINDS or not body.get("statuses"):
        return 400, {}, json.dumps({"Error": f"kind must be one of {_SCRIPT_KINDS}, with statuses"})
    backend = sagemaker_backends[body.get("account_id") or DEFAULT_ACCOUNT_ID][
        body.get("region") or "us-east-1"
    ]
    _sm_state(backend)["pending"].append(
        {
            "kind": body["kind"],
            "name_prefix": body.get("name_prefix", ""),
            "statuses": list(body["statuses"]),
            "failure_reason": body.get("failure_reason"),
            "log_lines": list(body.get("log_lines") or []),
            "metrics": dict(body.get("metrics") or {}),
        }
    )
    return 200, {}, json.dumps({"status": "ok"})


@patch
def _sagemaker_script_route() -> None:
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + SAGEMAKER_SCRIPT_PATH] = _script_route


@patch
def _sagemaker_training_jobs() -> None:
    """Keep the caller's MetricDefinitions; start scripted jobs in their first status."""
    from moto.sagemaker.models import SageMakerModelBackend

    create = SageMakerModelBackend.create_training_job
    describe = SageMakerModelBackend.describe_training_job

    def create_training_job(self: Any, **kwargs: Any) -> Any:
        given = (kwargs.get("algorithm_specification") or {}).get("MetricDefinitions")
        job = create(self, **kwargs)
        job.algorithm_specification["MetricDefinitions"] = given or []
        script = _take_script(self, "training-job", job.training_job_name)
        if script is not None:
            _set_training_status(job, script["statuses"][0], script.get("failure_reason"))
            _write_job_logs(self, job.training_job_name, script["log_lines"])
            _set_final_metrics(job, script["metrics"])
        elif _training_runtime(self) and not _sm_state(self).get("in_tuning"):
            _start_training_run(self, job)
        return job

    def describe_training_job(self: Any, training_job_name: str) -> Any:
        _advance(self, "training-job", training_job_name)
        return describe(self, training_job_name)

    SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign,assignment]
    SageMakerModelBackend.describe_training_job = describe_training_job  # type: ignore[method-assign]


@patch
def _sagemaker_stop_jobs() -> None:
    """StopTrainingJob and StopHyperParameterTuningJob (moto jumps to Stopped at once)."""
    from moto.core.responses import EmptyResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    def stop_training_job(self: Any, name: str) -> None:
        self.describe_training_job(name)  # the not-found error, as AWS words it
        job = self.training_jobs[name]
        if job.training_job_status != "InProgress":
            raise ValidationError(
                message=f"The request was rejected because the training job is in status {job.training_job_status}."
            )
        _sm_state(self)["active"].pop(("training-job", name), None)
        _set_training_status(job, "Stopped", None)

    def stop_hyper_parameter_tuning_job(self: Any, name: str) -> None:
        self.describe_hyper_parameter_tuning_job(name)
        job = self.hyper_parameter_tuning_jobs[name]
        if job.hyper_parameter_tuning_job_status != "InProgress":
            raise ValidationError(
                message=f"The request was rejected because the tuning job is in status {job.hyper_parameter_tuning_job_status}."
            )
        _sm_state(self)["active"].pop(("tuning-job", name), None)
        job.hyper_parameter_tuning_job_status = "Stopped"
        for child in _tuning_children(self, job.arn):
            if child.training_job_status == "InProgress":
                _set_training_status(child, "Stopped", None)

    SageMakerModelBackend.stop_training_job = stop_training_job  # type: ignore[attr-defined]
    SageMakerModelBackend.stop_hyper_parameter_tuning_job = stop_hyper_parameter_tuning_job  # type: ignore[attr-defined]

    def stop_training_job_response(self: Any) -> Any:
        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return EmptyResult()

    def stop_tuning_job_response(self: Any) -> Any:
        self.sagemaker_backend.stop_hyper_parameter_tuning_job(
            self._get_param("HyperParameterTuningJobName")
        )
        return EmptyResult()

    SageMakerResponse.stop_training_job = stop_training_job_response  # type: ignore[attr-defined]
    SageMakerResponse.stop_hyper_parameter_tuning_job = stop_tuning_job_response  # type: ignore[attr-defined]


@patch
def _sagemaker_endpoints() -> None:
    """UpdateEndpoint (blue/green switch of the endpoint config) and scripted endpoints."""
    from moto.core.responses import ActionResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    create = SageMakerModelBackend.create_endpoint
    describe = SageMakerModelBackend.describe_endpoint
    delete = SageMakerModelBackend.delete_endpoint

    def create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
        endpoint = create(self, endpoint_name, endpoint_config_name, tags)
        script = _take_script(self, "endpoint", endpoint_name)
        if script is not None:
            _apply_status(self, "endpoint", endpoint_name, script, script["statuses"][0])
        return endpoint

    def describe_endpoint(self: Any, endpoint_name: str) -> Any:
        _advance(self, "endpoint", endpoint_name)
        return describe(self, endpoint_name)

    def update_endpoint(
        self: Any, endpoint_name: str, endpoint_config_name: str, retain: bool = False
    ) -> Any:
        self.describe_endpoint_config(endpoint_config_name)  # must exist
        if endpoint_name not in self.endpoints:
            describe(self, endpoint_name)  # raises the not-found error
        endpoint = self.endpoints[endpoint_name]
        if endpoint.endpoint_status != "InService":
            raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
        _refuse_autoscaled_type_change(self, endpoint, endpoint_config_name)
        script = _take_script(self, "endpoint", endpoint_name)
        if script is None:
            _sm_state(self)["active"].pop(("endpoint", endpoint_name), None)  # stale script
            _switch_endpoint_config(self, endpoint, endpoint_config_name, retain)
        else:
            script["target_config"] = endpoint_config_name
            script["retain"] = retain
            endpoint.failure_reason = None
            _apply_status(self, "endpoint", endpoint_name, script, script["statuses"][0])
        endpoint.last_modified_time = _now()
        return endpoint

    def update_endpoint_response(self: Any) -> Any:
        endpoint = self.sagemaker_backend.update_endpoint(
            self._get_param("EndpointName"),
            self._get_param("EndpointConfigName"),
            bool(self._get_param("RetainAllVariantProperties")),
        )
        return ActionResult({"EndpointArn": endpoint.arn})

    def delete_endpoint(self: Any, endpoint_name: str) -> None:
        # A new endpoint of the same name must not inherit the old one's script.
        _sm_state(self)["active"].pop(("endpoint", endpoint_name), None)
        delete(self, endpoint_name)

    SageMakerModelBackend.create_endpoint = create_endpoint  # type: ignore[method-assign]
    SageMakerModelBackend.describe_endpoint = describe_endpoint  # type: ignore[method-assign]
    SageMakerModelBackend.delete_endpoint = delete_endpoint  # type: ignore[method-assign]
    SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
    SageMakerResponse.update_endpoint = update_endpoint_response  # type: ignore[attr-defined]


# Training runtime (opt-in, `dogclf demo` turns it on): a new training job really runs.
#   POST /moto-api/dogclf/sagemaker/training-runtime {"workdir": "/tmp/jobs", "region": ...}
# From then on each CreateTrainingJob (not a tuning job's children) starts InProgress and is
# executed, one at a time, by dogclf/local/job_executor.py in a thread of this server: its
# output lines become the job's CloudWatch log stream, its model.tar.gz lands in the
# emulated S3, and it ends Completed with FinalMetricDataList parsed by its own
# MetricDefinitions, or Failed with the error. The setting lives on the backend.

TRAINING_RUNTIME_PATH = "/moto-api/dogclf/sagemaker/training-runtime"


def enable_training_runtime(emulator_url: str, workdir: str, *, region: str = "us-east-1") -> None:
    """Client side of the training runtime route (demo, tests): one POST over HTTP."""
    post_json(emulator_url, TRAINING_RUNTIME_PATH, {"workdir": workdir, "region": region})


def _training_runtime(backend: Any) -> dict[str, Any] | None:
    runtime: dict[str, Any] | None = backend.__dict__.get("_dogclf_training_runtime")
    return runtime


def _training_runtime_route(
    request: Any, full_url: str, headers: Any
) -> tuple[int, dict[str, str], str]:
    import json
    from concurrent.futures import ThreadPoolExecutor

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemaker.models import sagemaker_backends

    if request.method != "POST":
        return 405, {}, json.dumps({"Error": 'POST {"workdir": "..."}'})
    body = json.loads(request.data or b"{}")
    if not body.get("workdir"):
        return 400, {}, json.dumps({"Error": "workdir is required"})
    region = body.get("region") or "us-east-1"
    backend = sagemaker_backends[body.get("account_id") or DEFAULT_ACCOUNT_ID][region]
    backend.__dict__["_dogclf_training_runtime"] = {
        "moto_url": request.host_url.rstrip("/"),
        "workdir": str(body["workdir"]),
        "region": region,
        # One job at a time: a 2-core machine gains nothing from two trainings at once.
        "pool": ThreadPoolExecutor(max_workers=1, thread_name_prefix="dogclf-training-job"),
    }
    return 200, {}, json.dumps({"status": "ok"})


def _start_training_run(backend: Any, job: Any) -> None:
    runtime = _training_runtime(backend)
    assert runtime is not None
    _set_training_status(job, "InProgress", None)
    job.secondary_status = "Starting"
    job.final_metric_data_list = []
    request = {
        "TrainingJobName": job.training_job_name,
        "HyperParameters": dict(job.hyper_parameters or {}),
        "AlgorithmSpecification": dict(job.algorithm_specification or {}),
        "InputDataConfig": list(job.input_data_config or []),
        "OutputDataConfig": dict(job.output_data_config or {}),
        "ResourceConfig": dict(job.resource_config or {}),
        "StoppingCondition": dict(job.stopping_condition or {}),
    }
    runtime["pool"].submit(_run_training_job, backend, job, request, runtime)


def _run_training_job(
    backend: Any, job: Any, request: dict[str, Any], runtime: dict[str, Any]
) -> None:
    import time
    from pathlib import Path

    from dogclf.aws.session import AwsContext
    from dogclf.local.emulator import DUMMY_CREDENTIALS
    from dogclf.local.job_executor import execute_training_job
    from dogclf.local.runner import JobFailedError

    started = int(time.time())

    def on_log(line: str) -> None:
        host, text = "algo-1", line
        if line.startswith("[algo-") and "] " in line:  # a multi-host job's "[algo-2] ..."
            host, text = line[1:].split("] ", 1)
        _write_job_logs(backend, job.training_job_name, [text], host=host)

    job.secondary_status = "Training"
    try:
        ctx = AwsContext(
            region=runtime["region"],
            endpoint_url=runtime["moto_url"],
            credentials=DUMMY_CREDENTIALS,
        )
        outcome = execute_training_job(ctx, request, Path(runtime["workdir"]), on_log=on_log)
    except JobFailedError as exc:  # the program's own failure, worded as SageMaker does
        if job.training_job_status == "InProgress":
            detail = f": {exc.reason}" if exc.reason else ""
            _set_training_status(
                job, "Failed", f"AlgorithmError: the entry point {exc.what}{detail}"
            )
        return
    except Exception as exc:  # the data or code could not be fetched or stored
        if job.training_job_status == "InProgress":
            reason = str(getattr(exc, "message", exc)).splitlines()[0]
            _set_training_status(job, "Failed", f"ClientError: {reason}")
        return
    if job.training_job_status != "InProgress":  # stopped meanwhile
        return
    job.model_artifacts = {"S3ModelArtifacts": outcome.model_data}
    _set_final_metrics(job, outcome.metrics)
    _set_training_status(job, "Completed", None)
    job.billable_time_in_seconds = max(1, int(time.time()) - started)


@patch
def _sagemaker_training_runtime_route() -> None:
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + TRAINING_RUNTIME_PATH] = _training_runtime_route


def _refuse_autoscaled_type_change(backend: Any, endpoint: Any, config_name: str) -> None:
    """AWS fails an UpdateEndpoint that changes the instance type of (or removes) a variant
    registered with Application Auto Scaling; the message here paraphrases AWS's."""
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    from moto.sagemaker.exceptions import ValidationError

    scaling = applicationautoscaling_backends[backend.account_id][backend.region_name]
    new = {
        v["VariantName"]: v.get("InstanceType")
        for v in backend.endpoint_configs[config_name].production_variants
    }
    old = backend.endpoint_configs[endpoint.endpoint_config_name].production_variants
    for variant in old:
        rid = f"endpoint/{endpoint.endpoint_name}/variant/{variant['VariantName']}"
        if not scaling.describe_scalable_targets("sagemaker", [rid], None):
            continue
        if new.get(variant["VariantName"]) != variant.get("InstanceType"):
            raise ValidationError(
                message=f"The variant {variant['VariantName']} of endpoint "
                f"{endpoint.endpoint_name} is registered with Application Auto Scaling; "
                "deregister it before changing its instance type or removing it."
            )


def _tuning_children(backend: Any, tuning_arn: str) -> list[Any]:
    return [
        job
        for job in backend.training_jobs.values()
        if getattr(job, "tuning_job_arn", None) == tuning_arn
    ]


def _sample_hyperparameters(ranges: dict[str, Any], rng: Any) -> dict[str, str]:
    import math

    tuned: dict[str, str] = {}
    for r in ranges.get("ContinuousParameterRanges") or []:
        lo, hi = float(r["MinValue"]), float(r["MaxValue"])
        if r.get("ScalingType") in ("Logarithmic", "ReverseLogarithmic") and lo > 0:
            value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            value = rng.uniform(lo, hi)
        tuned[r["Name"]] = f"{value:.6g}"
    for r in ranges.get("IntegerParameterRanges") or []:
        tuned[r["Name"]] = str(rng.randint(int(r["MinValue"]), int(r["MaxValue"])))
    for r in ranges.get("CategoricalParameterRanges") or []:
        tuned[r["Name"]] = rng.choice(r["Values"])  # echoed exactly as given, as AWS does
    return tuned


def _child_summary(job: Any, tuning_name: str, objective: dict[str, Any]) -> dict[str, Any]:
    metric = next(
        (m for m in job.final_metric_data_list if m["MetricName"] == objective.get("MetricName")),
        None,
    )
    summary = {
        "TrainingJobName": job.training_job_name,
        "TrainingJobArn": job.arn,
        "TuningJobName": tuning_name,
        "CreationTime": job.creation_time,
        "TrainingStartTime": job.training_start_time,
        "TrainingJobStatus": job.training_job_status,
        "TunedHyperParameters": job.tuned_hyper_parameters,
        "ObjectiveStatus": "Succeeded" if metric else "Pending",
    }
    if job.training_end_time:
        summary["TrainingEndTime"] = job.training_end_time
    if metric:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": objective.get("Type", "Maximize"),
            "MetricName": metric["MetricName"],
            "Value": metric["Value"],
        }
    return summary


@patch
def _sagemaker_tuning_jobs() -> None:
    """A tuning job starts MaxNumberOfTrainingJobs emulated training jobs (tuned values drawn
    from its ranges, a made-up objective value each) and reports the real best one;
    ListTrainingJobsForHyperParameterTuningJob lists them."""
    import random

    from moto.core.responses import ActionResult
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    create = SageMakerModelBackend.create_hyper_parameter_tuning_job
    describe = SageMakerModelBackend.describe_hyper_parameter_tuning_job

    def create_hyper_parameter_tuning_job(self: Any, **kwargs: Any) -> Any:
        arn = create(self, **kwargs)
        name = kwargs["hyper_parameter_tuning_job_name"]
        tuning = self.hyper_parameter_tuning_jobs[name]
        config = kwargs["hyper_parameter_tuning_job_config"]
        definition = kwargs.get("training_job_definition") or {}
        objective = config.get("HyperParameterTuningJobObjective") or {}
        limits = config.get("ResourceLimits") or {}
        count = int(limits.get("MaxNumberOfTrainingJobs") or 1)
        rng = random.Random(name)
        spec = dict(definition.get("AlgorithmSpecification") or {})
        children = []
        _sm_state(self)["in_tuning"] = True  # children get made-up metrics, not a real run
        for i in range(count):
            tuned = _sample_hyperparameters(config.get("ParameterRanges") or {}, rng)
            child_name = f"{name}-{i + 1:03d}-{rng.getrandbits(32):08x}"
            child = self.create_training_job(
                training_job_name=child_name,
                hyper_parameters={**(definition.get("StaticHyperParameters") or {}), **tuned},
                algorithm_specification=dict(spec),
                role_arn=definition.get("RoleArn"),
                input_data_config=definition.get("InputDataConfig") or [],
                output_data_config=definition.get("OutputDataConfig") or {},
                resource_config=definition.get("ResourceConfig") or {},
                vpc_config=definition.get("VpcConfig"),
                stopping_condition=definition.get("StoppingCondition") or {},
                tags=list(kwargs.get("tags") or []),
                enable_network_isolation=False,
                enable_inter_container_traffic_encryption=False,
                enable_managed_spot_training=bool(definition.get("EnableManagedSpotTraining")),
                checkpoint_config=definition.get("CheckpointConfig"),
                debug_hook_config=None,
                debug_rule_configurations=None,
                tensor_board_output_config=None,
                experiment_config=None,
            )
            child.tuning_job_arn = arn
            child.tuned_hyper_parameters = tuned
            if objective.get("MetricName"):
                low, high = (0.2, 1.5) if objective.get("Type") == "Minimize" else (0.5, 0.95)
                _set_final_metrics(
                    child, {objective["MetricName"]: round(rng.uniform(low, high), 4)}
                )
            children.append(_child_summary(child, name, objective))
        _sm_state(self)["in_tuning"] = False
        scored = [c for c in children if "FinalHyperParameterTuningJobObjectiveMetric" in c]
        if scored:
            pick = min if objective.get("Type") == "Minimize" else max
            best = pick(
                scored, key=lambda c: c["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            )
            tuning.best_training_job = best
            tuning.OverallBestTrainingJob = best
        tuning.training_job_status_counters = {
            "Completed": count,
            "InProgress": 0,
            "RetryableError": 0,
            "NonRetryableError": 0,
            "Stopped": 0,
        }
        tuning.objective_status_counters = {"Succeeded": len(scored), "Pending": 0, "Failed": 0}
        script = _take_script(self, "tuning-job", name)
        if script is not None:
            _apply_status(self, "tuning-job", name, script, script["statuses"][0])
        return arn

    def describe_hyper_parameter_tuning_job(self: Any, hyper_parameter_tuning_job_name: str) -> Any:
        _advance(self, "tuning-job", hyper_parameter_tuning_job_name)
        return describe(self, hyper_parameter_tuning_job_name=hyper_parameter_tuning_job_name)

    def list_children_response(self: Any) -> Any:
        backend = self.sagemaker_backend
        name = self._get_param("HyperParameterTuningJobName")
        backend.describe_hyper_parameter_tuning_job(name)  # not-found error
        tuning = backend.hyper_parameter_tuning_jobs[name]
        objective = (
            tuning.hyper_parameter_tuning_job_config.get("HyperParameterTuningJobObjective") or {}
        )
        rows = [_child_summary(j, name, objective) for j in _tuning_children(backend, tuning.arn)]
        status = self._get_param("StatusEquals")
        if status:
            rows = [r for r in rows if r["TrainingJobStatus"] == status]
        sort_by = self._get_param("SortBy") or "Name"
        keys = {
            "Name": lambda r: r["TrainingJobName"],
            "CreationTime": lambda r: r["CreationTime"],
            "Status": lambda r: r["TrainingJobStatus"],
            "FinalObjectiveMetricValue": lambda r: r.get(
                "FinalHyperParameterTuningJobObjectiveMetric", {}
            ).get("Value", float("-inf")),
        }
        rows.sort(
            key=keys.get(sort_by, keys["Name"]),
            reverse=self._get_param("SortOrder") == "Descending",
        )
        start = int(self._get_param("NextToken") or 0)
        size = int(self._get_param("MaxResults") or 10)
        page = rows[start : start + size]
        result: dict[str, Any] = {"TrainingJobSummaries": page}
        if start + size < len(rows):
            result["NextToken"] = str(start + size)
        return ActionResult(result)

    SageMakerModelBackend.create_hyper_parameter_tuning_job = create_hyper_parameter_tuning_job  # type: ignore[method-assign,assignment]
    SageMakerModelBackend.describe_hyper_parameter_tuning_job = describe_hyper_parameter_tuning_job  # type: ignore[method-assign]
    SageMakerResponse.list_training_jobs_for_hyper_parameter_tuning_job = list_children_response  # type: ignore[attr-defined]


# ================================================================ Lambda
# moto 5.2.5 has no provisioned concurrency. The patch below adds Put/Get/Delete and List
# on an alias or published version, READY at once (AWS takes minutes), refusing $LATEST and
# a count above the function's reserved concurrency as AWS does. Configs live on the moto
# backend (so /moto-api/reset forgets them) and vanish with their alias or function.

_PC_PATH = (
    r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"
)


def _pc_store(backend: Any) -> dict[tuple[str, str], dict[str, Any]]:
    store: dict[tuple[str, str], dict[str, Any]] = backend.__dict__.setdefault(
        "_dogclf_provisioned", {}
    )
    return store


@patch
def _lambda_provisioned_concurrency() -> None:
    import json
    from urllib.parse import unquote

    from moto.awslambda import urls
    from moto.awslambda.exceptions import InvalidParameterValueException, LambdaClientError
    from moto.awslambda.responses import LambdaResponse
    from moto.core.utils import utcnow

    class ConfigNotFound(LambdaClientError):
        code = 404

        def __init__(self) -> None:
            super().__init__(
                "ProvisionedConcurrencyConfigNotFoundException",
                "No Provisioned Concurrency Config found for this function",
            )

    def target(self: Any) -> tuple[str, str, Any]:
        name = unquote(self.path.rstrip("/").rsplit("/", 2)[-2])
        qualifier = self.querystring.get("Qualifier", [None])[0]
        if not qualifier or qualifier == "$LATEST":
            raise InvalidParameterValueException(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
            )
        function = self.backend.get_function(name, qualifier)  # ResourceNotFound if absent
        return name, qualifier, function

    def live_configs(self: Any, name: str) -> dict[str, dict[str, Any]]:
        """Configs of this function whose alias/version still exists (drop the others)."""
        store = _pc_store(self.backend)
        found = {}
        for (fn_name, qualifier), config in list(store.items()):
            if fn_name != name:
                continue
            try:
                self.backend.get_function(fn_name, qualifier)
            except LambdaClientError:
                del store[(fn_name, qualifier)]
                continue
            found[qualifier] = config
        return found

    def put_provisioned_concurrency_config(self: Any) -> Any:
        name, qualifier, _ = target(self)
        count = int(self.json_body["ProvisionedConcurrentExecutions"])
        reserved = self.backend.get_function(name).reserved_concurrency
        if count < 1:
            raise InvalidParameterValueException("ProvisionedConcurrentExecutions must be >= 1")
        if reserved is not None and count > int(reserved):
            raise InvalidParameterValueException(
                f"Requested Provisioned Concurrency ({count}) exceeds the function's reserved "
                f"concurrency ({reserved})."
            )
        config = {
            "RequestedProvisionedConcurrentExecutions": count,
            "AllocatedProvisionedConcurrentExecutions": count,
            "AvailableProvisionedConcurrentExecutions": count,
            "Status": "READY",
            "LastModified": utcnow().strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        }
        _pc_store(self.backend)[(name, qualifier)] = config
        return 202, {"status": 202}, json.dumps(config)

    def get_provisioned_concurrency_config(self: Any) -> Any:
        name, qualifier, _ = target(self)
        config = live_configs(self, name).get(qualifier)
        if config is None:
            raise ConfigNotFound()
        return 200, {}, json.dumps(config)

    def delete_provisioned_concurrency_config(self: Any) -> Any:
        name, qualifier, _ = target(self)
        _pc_store(self.backend).pop((name, qualifier), None)
        return 204, {"status": 204}, ""

    def list_provisioned_concurrency_configs(self: Any) -> Any:
        name = unquote(self.path.rstrip("/").rsplit("/", 2)[-2])
        function = self.backend.get_function(name)
        configs = [
            {"FunctionArn": f"{function.function_arn}:{qualifier}", **config}
            for qualifier, config in sorted(live_configs(self, name).items())
        ]
        return 200, {}, json.dumps({"ProvisionedConcurrencyConfigs": configs})

    urls.url_paths[_PC_PATH] = LambdaResponse.dispatch
    for fn in (
        put_provisioned_concurrency_config,
        get_provisioned_concurrency_config,
        delete_provisioned_concurrency_config,
        list_provisioned_concurrency_configs,
    ):
        setattr(LambdaResponse, fn.__name__, fn)


# ================================================================ S3 bucket policies
def _tls_only_statement(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    return statement.get("Effect") == "Deny" and condition == {
        "Bool": {"aws:SecureTransport": "false"}
    }


@patch
def _s3_secure_transport() -> None:
    """moto 5.2.5 evaluates bucket policies without their conditions, so the standard
    TLS-only statement (Deny when aws:SecureTransport is false) reads as "deny everything".
    The emulator stands in for AWS's HTTPS endpoint: such statements never apply here."""
    import json

    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    original = FakeBucket.get_permission

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return original(self, action, resource)
        doc = json.loads(self.policy)
        statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
        kept = [s for s in statements if not _tls_only_statement(s)]
        if len(kept) == len(statements):
            return original(self, action, resource)
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**doc, "Statement": kept})).is_action_permitted(
            action, resource
        )

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


# Lambda invoke without Docker: moto's "simple" backend only echoes the event back (even for
# a function that does not exist: the patch answers ResourceNotFound like AWS). Once
# enabled for an account/region (POST LAMBDA_RUNTIME_PATH {"env": {...}}, or
# enable_lambda_runtime()), a Python zip function really runs: its zip is unpacked into a
# temp dir and its handler called in a fresh interpreter (a cold start per invoke) with the
# function's environment, dummy credentials, AWS_ENDPOINT_URL pointing back at this moto
# server and the given "env" (e.g. AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME for `dogclf serve`).
# Its stdout/stderr go to the function's log group, an exception or a timeout comes back
# as FunctionError "Unhandled", as on AWS. The setting lives on the backend (reset forgets).

LAMBDA_RUNTIME_PATH = "/moto-api/dogclf/lambda/runtime"
_LAMBDA_RUNNER = r"""
import importlib, json, os, sys, time, traceback
sys.path.insert(0, os.getcwd())

class Context:
    aws_request_id = os.environ["_DOGCLF_REQUEST_ID"]
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
    invoked_function_arn = os.environ["_DOGCLF_INVOKED_ARN"]
    memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
    log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    _deadline = time.monotonic() + float(os.environ["_DOGCLF_TIMEOUT"])

    def get_remaining_time_in_millis(self):
        return int(max(0.0, self._deadline - time.monotonic()) * 1000)

event = json.loads(sys.stdin.read() or "{}")
try:
    module, _, name = os.environ["_HANDLER"].rpartition(".")
    outcome = {"result": getattr(importlib.import_module(module), name)(event, Context())}
except Exception as exc:
    traceback.print_exc()
    outcome = {"error": {"errorMessage": str(exc), "errorType": type(exc).__name__}}
with open(os.environ["_DOGCLF_RESULT"], "w") as handle:
    json.dump(outcome, handle, default=str)
"""


def enable_lambda_runtime(
    emulator_url: str, env: dict[str, str] | None = None, *, region: str = "us-east-1"
) -> None:
    """Client side of the runtime route (tests, demo): one POST over HTTP."""
    post_json(emulator_url, LAMBDA_RUNTIME_PATH, {"env": env or {}, "region": region})


def _lambda_runtime_route(
    request: Any, full_url: str, headers: Any
) -> tuple[int, dict[str, str], str]:
    import json

    from moto.awslambda.utils import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    if request.method != "POST":
        return 405, {}, json.dumps({"Error": 'POST {"env": {...}}'})
    body = json.loads(request.data or b"{}")
    backend = get_backend(
        body.get("account_id") or DEFAULT_ACCOUNT_ID, body.get("region") or "us-east-1"
    )
    backend.__dict__["_dogclf_runtime"] = {
        "moto_url": request.host_url.rstrip("/"),
        "env": {str(k): str(v) for k, v in (body.get("env") or {}).items()},
    }
    return 200, {}, json.dumps({"status": "ok"})


def _run_zip_function(fn: Any, event: Any, runtime: dict[str, Any]) -> tuple[bytes, bool]:
    """Run one invocation in a fresh interpreter; (payload, errored)."""
    import io
    import json
    import os
    import subprocess
    import sys
    import tempfile
    import time
    import uuid
    import zipfile

    request_id = str(uuid.uuid4())
    stream = f"{_now():%Y/%m/%d}/[{fn.version}]{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="dogclf-lambda-") as tmp:
        code = os.path.join(tmp, "task")
        zipfile.ZipFile(io.BytesIO(fn.code_bytes)).extractall(code)
        result_file = os.path.join(tmp, "result.json")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            **fn.environment_vars,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": fn.region,
            "AWS_DEFAULT_REGION": fn.region,
            "AWS_ENDPOINT_URL": runtime["moto_url"],
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "_HANDLER": str(fn.handler),
            "_DOGCLF_REQUEST_ID": request_id,
            "_DOGCLF_INVOKED_ARN": fn.function_arn,
            "_DOGCLF_TIMEOUT": str(fn.timeout),
            "_DOGCLF_RESULT": result_file,
            **runtime["env"],
        }
        payload = event if isinstance(event, bytes | str) else json.dumps(event)
        try:
            done = subprocess.run(
                [sys.executable, "-c", _LAMBDA_RUNNER],
                input=payload if isinstance(payload, bytes) else payload.encode(),
                env=env,
                cwd=code,
                capture_output=True,
                timeout=float(fn.timeout),
            )
            output = (done.stdout + done.stderr).decode("utf-8", "replace")
            with open(result_file) as handle:
                outcome = json.load(handle)
        except subprocess.TimeoutExpired:
            output = ""
            outcome = {"error": {"errorMessage": f"Task timed out after {fn.timeout}.00 seconds"}}
        except (OSError, ValueError):  # the interpreter died before writing its result
            outcome = {"error": {"errorMessage": "Runtime exited without providing a reason"}}
    lines = [f"START RequestId: {request_id}", *output.splitlines(), f"END RequestId: {request_id}"]
    logs = fn.logs_backend
    logs.ensure_log_group(fn.logs_group_name)
    logs.create_log_stream(fn.logs_group_name, stream)
    stamp = int(time.time() * 1000)
    logs.put_log_events(
        fn.logs_group_name, stream, [{"timestamp": stamp, "message": line} for line in lines]
    )
    if "error" in outcome:
        return json.dumps(outcome["error"]).encode(), True
    return json.dumps(outcome["result"]).encode(), False


@patch
def _lambda_runtime() -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + LAMBDA_RUNTIME_PATH] = _lambda_runtime_route
    echo = LambdaSimpleBackend.invoke

    def invoke(
        self: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> Any:
        fn = self.get_function(function_name, qualifier)  # moto's echo skips this 404
        runtime = self.__dict__.get("_dogclf_runtime")
        if not runtime or not str(fn.run_time or "").startswith("python") or not fn.code_bytes:
            return echo(self, function_name, qualifier, body, headers, response_headers)
        payload, errored = _run_zip_function(fn, body, runtime)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
