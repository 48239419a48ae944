"""Scripted SageMaker statuses, UpdateEndpoint and StopTrainingJob on moto 5.2.5.

moto 5.2.5 moves every training job, tuning job and endpoint straight to its final status,
so no test could see one in flight or failing, and it has no UpdateEndpoint or
StopTrainingJob. This module adds:

- the script route, so tests and the demo can choose the statuses over HTTP:
    POST /moto-api/dogclf/sagemaker/script
    {"kind": "training-job" | "tuning-job" | "endpoint", "name_prefix": "dogclf-dev",
     "statuses": ["InProgress", "Failed"], "failure_reason": "...",
     "log_lines": ["..."], "metrics": {"valid_accuracy": 0.91},
     "account_id": "123456789012", "region": "us-east-1"}
  The next resource of that kind created (or endpoint updated) whose name starts with
  name_prefix takes the script: it starts in statuses[0] and moves one status per Describe
  call, staying in the last one. A final "Failed" sets FailureReason; for an endpoint
  *update* it rolls back like AWS (InService on the old config, FailureReason set), and
  "UpdateRollbackFailed" stays there with FailureReason set until UpdateEndpoint again.
  An endpoint whose instances start (InService or Failed) gets SageMaker's log group
  /aws/sagemaker/Endpoints/<name> with a stream per variant.
  log_lines go to CloudWatch Logs as the job's container output; metrics become its
  FinalMetricDataList. Scripts live on the moto backend, so /moto-api/reset forgets them.
- overrides of moto's DescribeTrainingJob and DescribeEndpoint (one script step per call),
  CreateEndpoint (a scripted endpoint starts in its first status) and DeleteEndpoint (a new
  endpoint of the same name does not inherit the old one's script);
- UpdateEndpoint: switches the endpoint config, refuses to change the instance type of a
  variant registered with Application Auto Scaling and honours RetainAllVariantProperties
  (same-named variants keep their instance counts), as AWS does;
- StopTrainingJob: InProgress -> Stopped, refused in any other status, as AWS words it.

Scripted training and tuning jobs take their script where they are created
(training_runtime.py, tuning.py); the helpers they share are here.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dogclf.local.moto_ext import routes

SAGEMAKER_SCRIPT_PATH = "/moto-api/dogclf/sagemaker/script"
SCRIPT_KINDS = ("training-job", "tuning-job", "endpoint")
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
ENDPOINT_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"


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
    routes.post_json(
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


# ---------------------------------------------------------------- the scripts' store
def sagemaker_state(backend: Any) -> dict[str, Any]:
    """Pending scripts and the ones attached to a resource, kept on the moto backend."""
    state: dict[str, Any] = backend.__dict__.setdefault(
        "_dogclf_scripts", {"pending": [], "active": {}}
    )
    return state


def take_script(backend: Any, kind: str, name: str) -> dict[str, Any] | None:
    """Attach the first pending script of `kind` whose prefix `name` starts with."""
    state = sagemaker_state(backend)
    for script in state["pending"]:
        if script["kind"] == kind and name.startswith(script["name_prefix"]):
            state["pending"].remove(script)
            script = {**script, "step": 0, "fresh": True}
            state["active"][(kind, name)] = script
            return script
    return None


def start_script(backend: Any, kind: str, name: str) -> dict[str, Any] | None:
    """A just-created resource takes its script, if any, and enters the script's first status."""
    script = take_script(backend, kind, name)
    if script is not None:
        apply_status(backend, kind, name, script, script["statuses"][0])
    return script


def forget_script(backend: Any, kind: str, name: str) -> None:
    sagemaker_state(backend)["active"].pop((kind, name), None)


def _add_script(body: dict[str, Any], moto_url: str) -> routes.Response:
    from moto.sagemaker.models import sagemaker_backends

    if body.get("kind") not in SCRIPT_KINDS or not body.get("statuses"):
        return routes.reply(400, {"Error": f"kind must be one of {SCRIPT_KINDS}, with statuses"})
    account, region = routes.account_and_region(body)
    sagemaker_state(sagemaker_backends[account][region])["pending"].append(
        {
            "kind": body["kind"],
            "name_prefix": body.get("name_prefix", ""),
            "statuses": list(body["statuses"]),
            "failure_reason": body.get("failure_reason"),
            "log_lines": list(body.get("log_lines") or []),
            "metrics": dict(body.get("metrics") or {}),
        }
    )
    return routes.reply(200, {"status": "ok"})


# ---------------------------------------------------------------- moving along a script
def now() -> Any:
    from moto.core.utils import utcnow

    return utcnow()


def write_job_logs(backend: Any, job_name: str, lines: list[str], *, host: str = "algo-1") -> None:
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


def set_training_status(job: Any, status: str, reason: str | None) -> None:
    job.training_job_status = status
    job.secondary_status = {"InProgress": "Training"}.get(status, status)
    job.last_modified_time = now()
    if status == "InProgress":
        job.training_end_time = None
    else:
        job.training_end_time = now()
    if status == "Failed":
        job.failure_reason = reason or "AlgorithmError: the training script failed"


def set_final_metrics(job: Any, metrics: dict[str, float]) -> None:
    if metrics:
        job.final_metric_data_list = [
            {"MetricName": k, "Value": float(v), "Timestamp": now()} for k, v in metrics.items()
        ]


def advance(backend: Any, kind: str, name: str) -> None:
    """One Describe call = one step along the resource's script."""
    script = sagemaker_state(backend)["active"].get((kind, name))
    if script is None:
        return
    if script.pop("fresh", False):  # the first Describe sees the status it started in
        return
    statuses = script["statuses"]
    script["step"] = min(script["step"] + 1, len(statuses) - 1)
    apply_status(backend, kind, name, script, statuses[script["step"]])


def apply_status(backend: Any, kind: str, name: str, script: dict[str, Any], status: str) -> None:
    reason = script.get("failure_reason")
    if kind == "training-job" and name in backend.training_jobs:
        set_training_status(backend.training_jobs[name], status, reason)
    elif kind == "tuning-job" and name in backend.hyper_parameter_tuning_jobs:
        job = backend.hyper_parameter_tuning_jobs[name]
        job.hyper_parameter_tuning_job_status = status
        if status == "Failed":
            job.failure_reason = reason or "No training job succeeded"
    elif kind == "endpoint" and name in backend.endpoints:
        _apply_endpoint_status(backend, backend.endpoints[name], script, status)


def _apply_endpoint_status(
    backend: Any, endpoint: Any, script: dict[str, Any], status: str
) -> None:
    reason = script.get("failure_reason")
    target = script.get("target_config")
    before = endpoint.endpoint_status
    if target is None:  # a create
        endpoint.endpoint_status = status
        if status == "Failed":
            endpoint.failure_reason = reason or "the primary container did not pass ping"
    elif status == "Failed":  # an update that fails rolls back, as AWS does
        endpoint.endpoint_status = "InService"
        endpoint.failure_reason = reason or "the new variant did not pass ping"
    elif status == "InService":
        _switch_endpoint_config(backend, endpoint, target, bool(script.get("retain")))
    else:  # UpdateRollbackFailed stays there, serving on both configs, until acted on
        endpoint.endpoint_status = status
        if status == "UpdateRollbackFailed":
            endpoint.failure_reason = reason or "the new variant failed and so did the rollback"
    if endpoint.endpoint_status != before and status in ("InService", "Failed"):
        write_endpoint_logs(backend, endpoint)  # its instances started: they logged
    endpoint.last_modified_time = now()


def write_endpoint_logs(backend: Any, endpoint: Any) -> None:
    """As SageMaker does once an endpoint's instances start: the group
    /aws/sagemaker/Endpoints/<name> (never expires) and a stream per variant instance."""
    from moto.logs.models import logs_backends

    logs = logs_backends[backend.account_id][backend.region_name]
    group = ENDPOINT_LOG_GROUP_PREFIX + endpoint.endpoint_name
    logs.ensure_log_group(group)
    stamp = int(now().timestamp() * 1000)
    fleet = hashlib.sha256(endpoint.endpoint_config_name.encode()).hexdigest()[:17]
    for variant in endpoint.production_variants:
        stream = f"{variant['VariantName']}/i-{fleet}"  # one instance per config's fleet
        logs.ensure_log_stream(group, stream)
        line = f"dogclf emulator: {variant['VariantName']} instance started"
        logs.put_log_events(group, stream, [{"timestamp": stamp, "message": line}])


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


# ---------------------------------------------------------------- the patches
def _patch_training_jobs() -> None:
    """DescribeTrainingJob steps a script; StopTrainingJob (moto has none) stops a job."""
    from moto.core.responses import EmptyResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    describe = SageMakerModelBackend.describe_training_job

    def describe_training_job(self: Any, training_job_name: str) -> Any:
        advance(self, "training-job", training_job_name)
        return describe(self, training_job_name)

    def stop_training_job(self: Any, name: str) -> None:
        self.describe_training_job(name)  # the not-found error, as AWS words it
        job = self.training_jobs[name]
        if job.training_job_status != "InProgress":
            raise ValidationError(
                message=f"The request was rejected because the training job is in status {job.training_job_status}."
            )
        forget_script(self, "training-job", name)
        from dogclf.local.runner import request_stop

        if request_stop(name):  # running here: SIGTERM; the run's end makes it Stopped
            job.training_job_status = job.secondary_status = "Stopping"
            job.last_modified_time = now()
        else:
            set_training_status(job, "Stopped", None)

    def stop_training_job_response(self: Any) -> Any:
        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return EmptyResult()

    SageMakerModelBackend.describe_training_job = describe_training_job  # type: ignore[method-assign]
    SageMakerModelBackend.stop_training_job = stop_training_job  # type: ignore[attr-defined]
    SageMakerResponse.stop_training_job = stop_training_job_response  # type: ignore[attr-defined]


def _patch_endpoint_lifecycle() -> None:
    """CreateEndpoint starts a script, DescribeEndpoint steps it, DeleteEndpoint forgets it."""
    from moto.sagemaker.models import SageMakerModelBackend

    create = SageMakerModelBackend.create_endpoint
    describe = SageMakerModelBackend.describe_endpoint
    delete = SageMakerModelBackend.delete_endpoint

    def create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
        endpoint = create(self, endpoint_name, endpoint_config_name, tags)
        if start_script(self, "endpoint", endpoint_name) is None:  # InService at once
            write_endpoint_logs(self, endpoint)
        return endpoint

    def describe_endpoint(self: Any, endpoint_name: str) -> Any:
        advance(self, "endpoint", endpoint_name)
        return describe(self, endpoint_name)

    def delete_endpoint(self: Any, endpoint_name: str) -> None:
        # A new endpoint of the same name must not inherit the old one's script.
        forget_script(self, "endpoint", endpoint_name)
        delete(self, endpoint_name)

    SageMakerModelBackend.create_endpoint = create_endpoint  # type: ignore[method-assign]
    SageMakerModelBackend.describe_endpoint = describe_endpoint  # type: ignore[method-assign]
    SageMakerModelBackend.delete_endpoint = delete_endpoint  # type: ignore[method-assign]


def _patch_update_endpoint() -> None:
    """UpdateEndpoint, which moto lacks: a blue/green switch of the endpoint config."""
    from moto.core.responses import ActionResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    describe = SageMakerModelBackend.describe_endpoint

    def update_endpoint(
        self: Any, endpoint_name: str, endpoint_config_name: str, retain: bool = False
    ) -> Any:
        self.describe_endpoint_config(endpoint_config_name)  # must exist
        if endpoint_name not in self.endpoints:
            describe(self, endpoint_name)  # raises the not-found error
        endpoint = self.endpoints[endpoint_name]
        # UpdateRollbackFailed takes UpdateEndpoint: that is how it gets back to InService.
        if endpoint.endpoint_status not in ("InService", "UpdateRollbackFailed"):
            raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
        _refuse_autoscaled_type_change(self, endpoint, endpoint_config_name)
        script = take_script(self, "endpoint", endpoint_name)
        if script is None:
            forget_script(self, "endpoint", endpoint_name)  # a stale script
            _switch_endpoint_config(self, endpoint, endpoint_config_name, retain)
            write_endpoint_logs(self, endpoint)  # the new fleet's instances
        else:
            script["target_config"] = endpoint_config_name
            script["retain"] = retain
            endpoint.failure_reason = None
            apply_status(self, "endpoint", endpoint_name, script, script["statuses"][0])
        endpoint.last_modified_time = now()
        return endpoint

    def update_endpoint_response(self: Any) -> Any:
        endpoint = self.sagemaker_backend.update_endpoint(
            self._get_param("EndpointName"),
            self._get_param("EndpointConfigName"),
            bool(self._get_param("RetainAllVariantProperties")),
        )
        return ActionResult({"EndpointArn": endpoint.arn})

    SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
    SageMakerResponse.update_endpoint = update_endpoint_response  # type: ignore[attr-defined]


def install() -> None:
    routes.add_post_route(SAGEMAKER_SCRIPT_PATH, "POST a script", _add_script)
    _patch_training_jobs()
    _patch_endpoint_lifecycle()
    _patch_update_endpoint()
