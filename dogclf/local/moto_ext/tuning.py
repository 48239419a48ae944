"""Hyperparameter tuning jobs on moto 5.2.5 that start training jobs and report the best one.

moto 5.2.5 starts no training job for a tuning job, answers it with a fixed fake "best
job", and has no ListTrainingJobsForHyperParameterTuningJob or
StopHyperParameterTuningJob. This module overrides:

- CreateHyperParameterTuningJob: starts MaxNumberOfTrainingJobs emulated training jobs
  (tuned values drawn from the job's ranges, seeded by its name; a made-up objective value
  and a placeholder model.tar.gz each, since they are not run), records the real best one and the status counters, and
  starts a scripted tuning job (sagemaker_lifecycle.py) in its first status;
- DescribeHyperParameterTuningJob: one script step per call;
- with the training runtime on (training_runtime.py), the trials really run instead: at most
  MaxParallelTrainingJobs at a time, the next ones started as earlier ones end (checked on
  each Describe), each through the runtime with the definition's CheckpointConfig, so later
  trials receive what earlier ones left under its S3 URI (the feature cache); the tuning job
  InProgress until every trial ended, its counters and best trial from their real metrics;

and adds ListTrainingJobsForHyperParameterTuningJob (StatusEquals, SortBy, SortOrder,
NextToken/MaxResults) and StopHyperParameterTuningJob (stops the InProgress children too).
"""

from __future__ import annotations

from typing import Any

from dogclf.local.moto_ext.sagemaker_lifecycle import (
    advance,
    forget_script,
    sagemaker_state,
    set_final_metrics,
    start_script,
)

_OBJECTIVE = "FinalHyperParameterTuningJobObjectiveMetric"


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
        summary[_OBJECTIVE] = {
            "Type": objective.get("Type", "Maximize"),
            "MetricName": metric["MetricName"],
            "Value": metric["Value"],
        }
    return summary


def _create_child(backend: Any, name: str, tuned: dict[str, str], request: dict[str, Any]) -> Any:
    """One training job from the tuning request's TrainingJobDefinition and tuned values."""
    definition = request.get("training_job_definition") or {}
    return backend.create_training_job(
        training_job_name=name,
        hyper_parameters={**(definition.get("StaticHyperParameters") or {}), **tuned},
        algorithm_specification=dict(definition.get("AlgorithmSpecification") or {}),
        role_arn=definition.get("RoleArn"),
        input_data_config=definition.get("InputDataConfig") or [],
        output_data_config=definition.get("OutputDataConfig") or {},
        resource_config=definition.get("ResourceConfig") or {},
        vpc_config=definition.get("VpcConfig"),
        stopping_condition=definition.get("StoppingCondition") or {},
        tags=list(request.get("tags") or []),
        enable_network_isolation=False,
        enable_inter_container_traffic_encryption=False,
        enable_managed_spot_training=bool(definition.get("EnableManagedSpotTraining")),
        checkpoint_config=definition.get("CheckpointConfig"),
        debug_hook_config=None,
        debug_rule_configurations=None,
        tensor_board_output_config=None,
        experiment_config=None,
    )


def _start_children(backend: Any, arn: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tuning job's training jobs, created at once; their summaries."""
    import random

    name = request["hyper_parameter_tuning_job_name"]
    config = request["hyper_parameter_tuning_job_config"]
    objective = config.get("HyperParameterTuningJobObjective") or {}
    count = int((config.get("ResourceLimits") or {}).get("MaxNumberOfTrainingJobs") or 1)
    rng = random.Random(name)  # the same tuning job name draws the same values
    children = []
    sagemaker_state(backend)["in_tuning"] = True  # children get made-up metrics, not a real run
    for i in range(count):
        tuned = _sample_hyperparameters(config.get("ParameterRanges") or {}, rng)
        child = _create_child(
            backend, f"{name}-{i + 1:03d}-{rng.getrandbits(32):08x}", tuned, request
        )
        child.tuning_job_arn = arn
        child.tuned_hyper_parameters = tuned
        if objective.get("MetricName"):
            low, high = (0.2, 1.5) if objective.get("Type") == "Minimize" else (0.5, 0.95)
            set_final_metrics(child, {objective["MetricName"]: round(rng.uniform(low, high), 4)})
        _put_placeholder_model(backend, child)
        children.append(_child_summary(child, name, objective))
    sagemaker_state(backend)["in_tuning"] = False
    return children


PLACEHOLDER = b"emulated tuning trial: not run, no trained model\n"


def _put_placeholder_model(backend: Any, child: Any) -> None:
    """A completed trial's model.tar.gz where SageMaker uploads it (its ModelArtifacts), so
    that reading the tuning job's outcome meets what AWS would show; it holds only a note
    (the trial was not run). Skipped when the output bucket does not exist."""
    import io
    import tarfile

    from moto.s3.models import s3_backends

    uri = child.model_artifacts["S3ModelArtifacts"]
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = s3_backends[backend.account_id]["global"]
    if bucket not in s3.buckets:
        return
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        info = tarfile.TarInfo("EMULATED.txt")
        info.size = len(PLACEHOLDER)
        tar.addfile(info, io.BytesIO(PLACEHOLDER))
    s3.put_object(bucket, key, data.getvalue())


def _record_outcome(tuning: Any, children: list[dict[str, Any]], objective: dict[str, Any]) -> None:
    """The best child by the objective, and the status counters, as Describe reports them."""
    scored = [c for c in children if _OBJECTIVE in c]
    if scored:
        pick = min if objective.get("Type") == "Minimize" else max
        best = pick(scored, key=lambda c: c[_OBJECTIVE]["Value"])
        tuning.best_training_job = best
        tuning.OverallBestTrainingJob = best
    tuning.training_job_status_counters = {
        "Completed": len(children),
        "InProgress": 0,
        "RetryableError": 0,
        "NonRetryableError": 0,
        "Stopped": 0,
    }
    tuning.objective_status_counters = {"Succeeded": len(scored), "Pending": 0, "Failed": 0}


# ---------------------------------------------------------------- trials that really run

_TRIALS = "_dogclf_trials"  # on the tuning job: what starting its next trials needs
_FINAL = ("Completed", "Failed", "Stopped")


def _start_real_trials(backend: Any, tuning: Any, request: dict[str, Any]) -> None:
    import random

    from moto.core.utils import utcnow

    tuning.hyper_parameter_tuning_job_status = "InProgress"
    tuning.hyper_parameter_tuning_end_time = None
    tuning.best_training_job = tuning.OverallBestTrainingJob = None
    tuning.last_modified_time = utcnow()
    name = request["hyper_parameter_tuning_job_name"]
    tuning.__dict__[_TRIALS] = {"request": request, "rng": random.Random(name), "created": 0}
    _top_up(backend, tuning)
    _follow_trials(backend, tuning)


def _top_up(backend: Any, tuning: Any) -> None:
    """Start trials until MaxParallelTrainingJobs run or MaxNumberOfTrainingJobs exist."""
    state = tuning.__dict__[_TRIALS]
    if tuning.hyper_parameter_tuning_job_status != "InProgress":
        return
    config = state["request"]["hyper_parameter_tuning_job_config"]
    limits = config.get("ResourceLimits") or {}
    most, parallel = (
        int(limits.get(k) or 1) for k in ("MaxNumberOfTrainingJobs", "MaxParallelTrainingJobs")
    )
    children = _tuning_children(backend, tuning.arn)
    running = sum(c.training_job_status not in _FINAL for c in children)
    rng, name = state["rng"], tuning.hyper_parameter_tuning_job_name
    while state["created"] < most and running < parallel:
        tuned = _sample_hyperparameters(config.get("ParameterRanges") or {}, rng)
        child_name = f"{name}-{state['created'] + 1:03d}-{rng.getrandbits(32):08x}"
        child = _create_child(backend, child_name, tuned, state["request"])  # runs it
        child.tuning_job_arn = tuning.arn
        child.tuned_hyper_parameters = tuned
        state["created"] += 1
        running += 1


def _follow_trials(backend: Any, tuning: Any) -> None:
    """Counters, the best trial and the tuning job's status from its trials as they are."""
    from moto.core.utils import utcnow

    state = tuning.__dict__[_TRIALS]
    config = state["request"]["hyper_parameter_tuning_job_config"]
    objective = config.get("HyperParameterTuningJobObjective") or {}
    name = tuning.hyper_parameter_tuning_job_name
    children = _tuning_children(backend, tuning.arn)
    summaries = [_child_summary(c, name, objective) for c in children]
    _record_outcome(tuning, summaries, objective)
    statuses = [c.training_job_status for c in children]
    tuning.training_job_status_counters = {
        "Completed": statuses.count("Completed"),
        "InProgress": sum(s not in _FINAL for s in statuses),
        "RetryableError": 0,
        "NonRetryableError": statuses.count("Failed"),
        "Stopped": statuses.count("Stopped"),
    }
    most = int((config.get("ResourceLimits") or {}).get("MaxNumberOfTrainingJobs") or 1)
    done = state["created"] >= most and all(s in _FINAL for s in statuses)
    if tuning.hyper_parameter_tuning_job_status == "InProgress" and done:
        failed = not any(s == "Completed" for s in statuses)
        tuning.hyper_parameter_tuning_job_status = "Failed" if failed else "Completed"
        if failed:
            tuning.failure_reason = "No training job succeeded"
        tuning.hyper_parameter_tuning_end_time = utcnow()


def _patch_create_and_describe() -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    create = SageMakerModelBackend.create_hyper_parameter_tuning_job
    describe = SageMakerModelBackend.describe_hyper_parameter_tuning_job

    def create_hyper_parameter_tuning_job(self: Any, **kwargs: Any) -> Any:
        from dogclf.local.moto_ext.training_runtime import runtime_enabled

        arn = create(self, **kwargs)
        name = kwargs["hyper_parameter_tuning_job_name"]
        if runtime_enabled(self):
            _start_real_trials(self, self.hyper_parameter_tuning_jobs[name], kwargs)
            return arn
        config = kwargs["hyper_parameter_tuning_job_config"]
        objective = config.get("HyperParameterTuningJobObjective") or {}
        children = _start_children(self, arn, kwargs)
        _record_outcome(self.hyper_parameter_tuning_jobs[name], children, objective)
        start_script(self, "tuning-job", name)
        return arn

    def describe_hyper_parameter_tuning_job(self: Any, hyper_parameter_tuning_job_name: str) -> Any:
        tuning = self.hyper_parameter_tuning_jobs.get(hyper_parameter_tuning_job_name)
        if tuning is not None and _TRIALS in tuning.__dict__:
            _top_up(self, tuning)
            _follow_trials(self, tuning)
        advance(self, "tuning-job", hyper_parameter_tuning_job_name)
        return describe(self, hyper_parameter_tuning_job_name=hyper_parameter_tuning_job_name)

    SageMakerModelBackend.create_hyper_parameter_tuning_job = create_hyper_parameter_tuning_job  # type: ignore[method-assign,assignment]
    SageMakerModelBackend.describe_hyper_parameter_tuning_job = describe_hyper_parameter_tuning_job  # type: ignore[method-assign]


def _sorted_page(response: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """SortBy/SortOrder, then one NextToken/MaxResults page of the summaries."""
    sort_by = response._get_param("SortBy") or "Name"
    keys = {
        "Name": lambda r: r["TrainingJobName"],
        "CreationTime": lambda r: r["CreationTime"],
        "Status": lambda r: r["TrainingJobStatus"],
        "FinalObjectiveMetricValue": lambda r: r.get(_OBJECTIVE, {}).get("Value", float("-inf")),
    }
    rows.sort(
        key=keys.get(sort_by, keys["Name"]),
        reverse=response._get_param("SortOrder") == "Descending",
    )
    start = int(response._get_param("NextToken") or 0)
    size = int(response._get_param("MaxResults") or 10)
    result: dict[str, Any] = {"TrainingJobSummaries": rows[start : start + size]}
    if start + size < len(rows):
        result["NextToken"] = str(start + size)
    return result


def _list_children_response(self: Any) -> Any:
    """ListTrainingJobsForHyperParameterTuningJob, on moto's SageMakerResponse."""
    from moto.core.responses import ActionResult

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
    return ActionResult(_sorted_page(self, rows))


def _patch_stop() -> None:
    """StopHyperParameterTuningJob: the job Stopped, its InProgress children stopped as
    StopTrainingJob stops them."""
    from moto.core.responses import EmptyResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    def stop_hyper_parameter_tuning_job(self: Any, name: str) -> None:
        self.describe_hyper_parameter_tuning_job(name)
        job = self.hyper_parameter_tuning_jobs[name]
        if job.hyper_parameter_tuning_job_status != "InProgress":
            raise ValidationError(
                message=f"The request was rejected because the tuning job is in status {job.hyper_parameter_tuning_job_status}."
            )
        forget_script(self, "tuning-job", name)
        job.hyper_parameter_tuning_job_status = "Stopped"
        for child in _tuning_children(self, job.arn):
            if child.training_job_status == "InProgress":
                # StopTrainingJob's path: a child running here gets SIGTERM and ends Stopped
                # with its model uploaded (sagemaker_lifecycle.py, training_runtime.py).
                self.stop_training_job(child.training_job_name)

    def stop_tuning_job_response(self: Any) -> Any:
        self.sagemaker_backend.stop_hyper_parameter_tuning_job(
            self._get_param("HyperParameterTuningJobName")
        )
        return EmptyResult()

    SageMakerModelBackend.stop_hyper_parameter_tuning_job = stop_hyper_parameter_tuning_job  # type: ignore[attr-defined]
    SageMakerResponse.stop_hyper_parameter_tuning_job = stop_tuning_job_response  # type: ignore[attr-defined]


def install() -> None:
    from moto.sagemaker.responses import SageMakerResponse

    _patch_create_and_describe()
    _patch_stop()
    SageMakerResponse.list_training_jobs_for_hyper_parameter_tuning_job = _list_children_response  # type: ignore[attr-defined]
