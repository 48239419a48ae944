"""`dogclf train-sagemaker [--tune|--local]`: a SageMaker training or tuning job, or the same
job run here through AWS's own PyTorch training launcher."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from dogclf.commands.in_flight import waiting_on_job
from dogclf.commands.options import DRY_RUN_OPTION, JSON_OPTION, POLL_INTERVAL_OPTION

TUNE_HELP = "A hyperparameter tuning job over the [hpo] ranges."
LOCAL_HELP = "Run the same job here (no Docker), through AWS's training launcher."
DATA_HELP = "--local: dataset folder \\[default: data.local_dir, else S3 data]."
UPLOAD_HELP = "--local: put model.tar.gz in S3 and point latest at it."


def train_sagemaker(
    ctx: typer.Context,
    tune: bool = typer.Option(False, "--tune", help=TUNE_HELP),
    local: bool = typer.Option(False, "--local", help=LOCAL_HELP),
    wait: bool = typer.Option(True, help="Follow status and logs until the job ends."),
    data: Path | None = typer.Option(None, help=DATA_HELP),
    workdir: Path = typer.Option(Path(".dogclf/jobs"), help="--local: where job folders go."),
    upload: bool = typer.Option(False, "--upload", help=UPLOAD_HELP),
    poll_interval: float | None = POLL_INTERVAL_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train on SageMaker (the training core as the PyTorch container's entry point)."""
    from dogclf.commands.context import state
    from dogclf.errors import DogclfError

    cfg = state(ctx).config()
    if local:
        if tune:
            raise DogclfError(
                "--tune runs on SageMaker only", "drop --local, or train locally without --tune"
            )
        _train_local(
            cfg, data=data, workdir=workdir, upload=upload, dry_run=dry_run, as_json=as_json
        )
        return
    poll = 30.0 if poll_interval is None else poll_interval
    run = _tune if tune else _train
    run(cfg, wait=wait, poll=poll, dry_run=dry_run, as_json=as_json)


def _prepare(cfg: Any, title: str) -> tuple[Any, Any, dict[str, str]]:
    """Checks and the code bundle step shared by a job and a tuning job; the request
    builder's image, source_uri, role and region."""
    from dogclf import render
    from dogclf.aws.images import training_image
    from dogclf.aws.session import AwsContext, require_role
    from dogclf.aws.training_jobs import check_data, plan_source
    from dogclf.plan import Plan

    role = require_role(cfg)
    aws = AwsContext.from_config(cfg)
    with render.err.status("checking data and resolving the training image", spinner="dots"):
        check_data(aws, cfg)
        image = training_image(cfg, aws.region)
    plan = Plan(title)
    source_uri = plan_source(plan, aws, cfg)
    return aws, plan, {"image": image, "source_uri": source_uri, "role": role, "region": aws.region}


def _train(cfg: Any, *, wait: bool, poll: float, dry_run: bool, as_json: bool) -> None:
    from dogclf import render
    from dogclf.aws import training_jobs as tj
    from dogclf.plan import Action

    aws, plan, job = _prepare(cfg, "train-sagemaker")
    name = cfg.names.training_job(tj.job_stamp())
    request = tj.training_request(cfg, name=name, **job)
    _plan_cache_channel(plan, aws, cfg, request)
    digest = next(t["Value"] for t in request["Tags"] if t["Key"] == tj.REQUEST_TAG)
    twin = tj.find_running_twin(aws, cfg, digest)
    if twin:
        name = twin
        plan.add(
            Action.NOOP,
            "training job",
            twin,
            "already running from this same request: following it",
        )
    else:
        shape = _job_shape_text(cfg, request["HyperParameters"])
        plan.add(
            Action.CREATE,
            "training job",
            name,
            f"{shape}; {job['image'].rsplit('/', 1)[-1]}",
            lambda: tj.create_training_job(aws, request),
        )
    if not _submitted(
        plan, request, name, "training job", dry_run=dry_run, as_json=as_json, wait=wait
    ):
        return
    with waiting_on_job("training job", name):
        description, tail = _follow_training_job(aws, name, poll)
    tj.raise_if_failed(description, tail)
    latest = tj.record_latest(aws, cfg, description, f"train-sagemaker:{name}")
    result = {
        "job": name,
        "status": description["TrainingJobStatus"],
        "model_data": latest.model_data,
        "metrics": latest.metrics,
        "billable_seconds": description.get("BillableTimeInSeconds"),
        "feature_caches_shared": _share_feature_caches(aws, cfg, description),
    }
    if as_json:
        render.print_json(result)
        return
    render.out.print(f"training job {name} completed", highlight=False)
    render.out.print(f"model: {latest.model_data}", highlight=False)
    for metric, value in sorted(latest.metrics.items()):
        render.out.print(f"  {metric} = {value:.4f}", highlight=False)
    render.note("latest model pointer updated: `dogclf deploy` serves this model")


def _plan_cache_channel(plan: Any, aws: Any, cfg: Any, request: dict[str, Any]) -> None:
    """The stage's feature cache into `request` as a read-only input channel, when it holds
    one (the plan says whether it is added, and why not)."""
    from dogclf.aws import feature_cache_store as fcs
    from dogclf.plan import Action

    channel, line = fcs.plan_channel(aws, cfg)
    if line:
        plan.add(Action.NOOP, "input channel", fcs.CHANNEL, line)
    if channel:
        fcs.add_channel(request, channel)


def _share_feature_caches(aws: Any, cfg: Any, description: dict[str, Any]) -> list[str]:
    """After a Completed job (or tuning job): its new caches to the stage prefix, for later
    jobs. A failure is a warning: the model is already trained and recorded."""
    from dogclf import render
    from dogclf.aws import feature_cache_store as fcs
    from dogclf.aws.training_jobs import uses_feature_cache
    from dogclf.errors import DogclfError

    status = description.get("TrainingJobStatus") or description.get(
        "HyperParameterTuningJobStatus"
    )
    if status != "Completed" or not uses_feature_cache(cfg):
        return []
    try:
        keys = fcs.promote(aws, cfg, description)
    except DogclfError as exc:
        render.warn(f"the job's feature cache was not shared with later jobs: {exc}")
        return []
    if keys:
        shown = ", ".join(k[:12] for k in keys)
        render.note(f"feature cache {shown} copied to {fcs.stage_uri(cfg)}: later jobs reuse it")
    return keys


def _job_shape_text(cfg: Any, hyperparameters: dict[str, str]) -> str:
    """ "1 x ml.g5.12xlarge, torchrun (4 GPUs)": what the plan says the job runs on."""
    from dogclf.aws.instance_gpus import gpu_count
    from dogclf.model.hyperparameters import TORCH_DISTRIBUTED

    t = cfg.training
    shape = f"{t.instance_count} x {t.instance_type}"
    shape += ", managed spot" if t.spot else ""
    if TORCH_DISTRIBUTED in hyperparameters:
        gpus = gpu_count(t.instance_type)
        per_host = "a process per GPU" if gpus is None else f"{max(gpus, 1)} process(es) each"
        shape += f", torchrun ({per_host})"
    return shape


def _follow_training_job(aws: Any, name: str, poll: float) -> tuple[dict[str, Any], list[str]]:
    from dogclf import render
    from dogclf.aws import training_jobs as tj

    with _job_status(f"training job {name}") as on_status:
        watch = tj.JobWatch(
            on_log=lambda line: render.err.print(line, markup=False, highlight=False),
            on_status=on_status,
        )
        description = tj.wait_training_job(aws, name, poll_interval=poll, watch=watch)
    tail = list(watch.tail.last) if watch.tail is not None else []
    return description, tail


@contextmanager
def _job_status(what: str) -> Iterator[Callable[[str], None]]:
    """A spinner saying `what` is starting; the callback shows (and notes) each new status."""
    from dogclf import render

    with render.err.status(f"{what}: starting", spinner="dots") as status:

        def on_status(text: str) -> None:
            status.update(f"{what}: {text}")
            render.note(f"{what}: {text}")

        yield on_status


def _submitted(
    plan: Any,
    request: dict[str, Any],
    name: str,
    kind: str,
    *,
    dry_run: bool,
    as_json: bool,
    wait: bool,
) -> bool:
    """Show the plan, then (not --dry-run) create the job; True when the caller should
    follow it (--wait), else it says the job started."""
    from dogclf import render
    from dogclf.commands.plans import apply_plan, show_plan

    if show_plan(plan, dry_run=dry_run, as_json=as_json, request=request):
        return False
    apply_plan(plan)
    if wait:
        return True
    if as_json:
        render.print_json({"job": name, "kind": kind, "status": "InProgress"})
    else:
        render.out.print(name, highlight=False)
        render.note(f"{kind} started; follow it with `dogclf status`")
    return False


def _tune(cfg: Any, *, wait: bool, poll: float, dry_run: bool, as_json: bool) -> None:
    from dogclf import render
    from dogclf.aws import training_jobs as tj
    from dogclf.aws import tuning_jobs as hpo

    aws, plan, job = _prepare(cfg, "train-sagemaker --tune")
    name = cfg.names.tuning_job(hpo.tuning_stamp())
    request = hpo.tuning_request(cfg, name=name, **job)
    _plan_cache_channel(plan, aws, cfg, request)
    name = _plan_tuning_job(plan, aws, cfg, request)
    if not _submitted(
        plan, request, name, "tuning job", dry_run=dry_run, as_json=as_json, wait=wait
    ):
        return
    with waiting_on_job("tuning job", name), _job_status(f"tuning job {name}") as on_status:
        description = hpo.wait_tuning_job(aws, name, poll_interval=poll, on_status=on_status)
    best = hpo.best_job(aws, description)
    if best.without_model:
        render.warn(
            f"{', '.join(best.without_model)} scored better but left no model.tar.gz "
            f"(stopped before writing one): using {best.training_job}"
        )
    tj.record_latest(aws, cfg, best.description, f"train-sagemaker --tune:{best.training_job}")
    shared = _share_feature_caches(aws, cfg, description)
    if as_json:
        render.print_json(
            {
                **best.as_dict(),
                "status": description["HyperParameterTuningJobStatus"],
                "feature_caches_shared": shared,
            }
        )
        return
    from rich.table import Table

    objective = best.objective
    render.out.print(
        f"tuning job {name} {description['HyperParameterTuningJobStatus'].lower()}; "
        f"best job {best.training_job}: {objective.get('MetricName')} = {objective.get('Value')}",
        highlight=False,
    )
    table = Table("hyperparameter", "value", show_edge=False)
    for key, value in sorted(best.hyperparameters.items()):
        table.add_row(key, value)
    render.out.print(table)
    render.out.print(f"model: {best.model_data}", highlight=False)
    render.note("latest model pointer updated to the best job's model")


def _plan_tuning_job(plan: Any, aws: Any, cfg: Any, request: dict[str, Any]) -> str:
    """The tuning job's step: create it, or follow the twin started from the same request
    (a re-run after Ctrl-C must not start max_jobs more trials); returns the job's name."""
    from dogclf.aws import training_jobs as tj
    from dogclf.aws import tuning_jobs as hpo
    from dogclf.aws.jobs_in_flight import TUNING
    from dogclf.plan import Action

    digest = next(t["Value"] for t in request["Tags"] if t["Key"] == tj.REQUEST_TAG)
    twin = tj.find_running_twin(aws, cfg, digest, TUNING)
    if twin:
        plan.add(
            Action.NOOP, "tuning job", twin, "already running from this same request: following it"
        )
        return twin
    h = cfg.hpo
    plan.add(
        Action.CREATE,
        "tuning job",
        request[hpo.NAME_KEY],
        f"{h.strategy}, {h.max_jobs} jobs ({h.max_parallel_jobs} at a time), "
        f"{h.objective_type.lower()} {h.objective}; "
        f"{_job_shape_text(cfg, request['TrainingJobDefinition']['StaticHyperParameters'])} each",
        lambda: hpo.create_tuning_job(aws, request),
    )
    return str(request[hpo.NAME_KEY])


def _train_local(
    cfg: Any, *, data: Path | None, workdir: Path, upload: bool, dry_run: bool, as_json: bool
) -> None:
    from dogclf import render
    from dogclf.aws import training_jobs as tj
    from dogclf.commands.plans import show_plan
    from dogclf.plan import Action

    if not dry_run:  # before the plan: a missing extra is the command's one error line
        from dogclf.errors import require_extras
        from dogclf.local.runner import NEEDS

        require_extras("train-sagemaker --local", *NEEDS)
    name = f"local-{tj.job_stamp()}"
    root = data or cfg.data.local_dir
    cache_uri, cache_line = _local_cache_channel(cfg, root)
    plan = _local_plan(cfg, name, root, workdir, upload)
    if cache_line:
        plan.add(Action.NOOP, "input channel", "feature_cache", cache_line)
    if show_plan(plan, dry_run=dry_run, as_json=as_json):
        return
    from dogclf.local.runner import run_local_job

    if root is None:
        channels = _download_channels(cfg, workdir / "data")
    else:
        channels = {c: Path(root) / c for c in tj.CHANNELS}
    if cache_uri:  # downloaded like a data channel: the toolkit sets SM_CHANNEL_FEATURE_CACHE
        channels["feature_cache"] = _download_prefix(cfg, cache_uri, workdir / "feature-cache")
    result = run_local_job(
        cfg,
        channels,
        workdir,
        instance_count=cfg.training.instance_count,
        job_name=name,
        on_log=lambda line: render.err.print(line, markup=False, highlight=False),
    )
    from dogclf.aws.artifacts import pointer_metrics

    output: dict[str, Any] = {
        "job": name,
        "model_tar": str(result.model_tar),
        "log": str(result.log_path),
        # The headline figures, as a SageMaker job reports them; the history and the test
        # confusion counts stay in the tarball's metrics.json (`dogclf report`).
        "metrics": pointer_metrics(result.metrics),
        "feature_cache": result.metrics.get("feature_cache"),
    }
    if upload:
        output["model_data"] = _upload_local_model(cfg, name, result)
    if as_json:
        render.print_json(output)
        return
    render.out.print(f"model: {result.model_tar}", highlight=False)
    if upload:
        render.out.print(
            f"uploaded: {output['model_data']} (latest model pointer updated)", highlight=False
        )


def _local_plan(cfg: Any, name: str, root: Path | None, workdir: Path, upload: bool) -> Any:
    """What `train-sagemaker --local` will do (shown only: the job runs after it)."""
    from dogclf.plan import Action, Plan

    plan = Plan("train-sagemaker --local")
    source = str(root) if root else cfg.s3_prefix("data") + "/"
    if root is None:
        plan.add(Action.CREATE, "local data", str(workdir / "data"), f"download {source}")
    t = cfg.training
    plan.add(
        Action.CREATE,
        "local job",
        str(workdir / name),
        f"{t.arch}, {t.epochs} epochs, {t.instance_count} emulated host(s), data {source}",
    )
    if upload:
        plan.add(
            Action.CREATE,
            "s3 object",
            cfg.s3_prefix("models", name, "output", "model.tar.gz"),
            "upload the model and update the latest pointer",
        )
    return plan


def _local_cache_channel(cfg: Any, root: Path | None) -> tuple[str | None, str | None]:
    """(the stage's feature cache URI to download, or None; the plan line). Only when the
    data comes from S3 too: a run on a local folder talks to no AWS."""
    from dogclf.aws import feature_cache_store as fcs
    from dogclf.aws.session import AwsContext
    from dogclf.aws.training_jobs import uses_feature_cache

    if not uses_feature_cache(cfg):
        return None, None
    if root is not None:
        return None, "feature cache channel: not added (local data: --local reads no S3)"
    channel, line = fcs.plan_channel(AwsContext.from_config(cfg), cfg)
    return (fcs.stage_uri(cfg) if channel else None), line


def _download_channels(cfg: Any, target: Path) -> dict[str, Path]:
    from dogclf.aws.training_jobs import CHANNELS

    _download_prefix(cfg, cfg.s3_prefix("data") + "/", target)
    return {c: target / c for c in CHANNELS}


def _download_prefix(cfg: Any, uri: str, target: Path) -> Path:
    from dogclf import render
    from dogclf.aws.s3_sync import download_prefix
    from dogclf.aws.session import AwsContext

    aws = AwsContext.from_config(cfg)
    with render.err.status(f"downloading {uri}", spinner="dots"):
        count = download_prefix(aws, uri, target, workers=cfg.data.upload_workers)
    render.success(f"{count} files downloaded to {target} (files already there are kept)")
    return target


def _upload_local_model(cfg: Any, name: str, result: Any) -> str:
    from dogclf.aws.artifacts import publish_model
    from dogclf.aws.session import AwsContext

    latest = publish_model(
        AwsContext.from_config(cfg),
        cfg,
        cfg.s3_prefix("models", name, "output", "model.tar.gz"),
        source=f"train-sagemaker --local:{name}",
        metrics=result.metrics if isinstance(result.metrics, dict) else {},
        tarball=result.model_tar,
    )
    return latest.model_data


def register(app: typer.Typer) -> None:
    app.command("train-sagemaker")(train_sagemaker)
