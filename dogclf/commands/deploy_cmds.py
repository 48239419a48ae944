"""`dogclf deploy` (model, endpoint config, endpoint; blue/green; real-time or serverless)
and `dogclf scale`."""

from __future__ import annotations

import typer

from dogclf.commands.options import DRY_RUN_OPTION, JSON_OPTION, POLL_INTERVAL_OPTION


def deploy(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None, "--model", help="model.tar.gz to serve: an s3:// URI, or 'latest' \\[default]."
    ),
    poll_interval: float | None = POLL_INTERVAL_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Serve a model on the endpoint (real-time or serverless, endpoint.mode); a changed
    deploy switches it blue/green, or replaces it where AWS cannot switch."""
    from dogclf import render
    from dogclf.aws.artifacts import resolve_model_uri
    from dogclf.aws.endpoints import DeploySpec, DeployWatch, describe_endpoint, plan_deploy
    from dogclf.aws.images import inference_image
    from dogclf.aws.session import AwsContext, require_role
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, show_plan
    from dogclf.plan import Plan

    cfg = state(ctx).config()
    role = require_role(cfg)
    aws = AwsContext.from_config(cfg)
    model_data = resolve_model_uri(aws, cfg, model)
    image = inference_image(cfg, aws.region)
    spec = DeploySpec.build(cfg, model_data=model_data, image=image, role=role, region=aws.region)
    plan = Plan(f"deploy {model_data} -> endpoint {spec.endpoint}")
    watch = DeployWatch(
        poll_interval=30.0 if poll_interval is None else poll_interval,
        on_status=render.note,
        on_warning=render.warn,
    )
    plan_deploy(plan, aws, cfg, spec, watch)
    summary = spec.summary()
    if show_plan(plan, dry_run=dry_run, as_json=as_json, **summary):
        return
    from dogclf.commands.in_flight import waiting_on

    with waiting_on(
        f"Endpoint {spec.endpoint}",
        "keeps deploying (and bills once up: per instance-hour, or per request if serverless)",
        "`dogclf status` shows it, `dogclf teardown` removes it",
    ):
        apply_plan(plan)
    endpoint = describe_endpoint(aws, spec.endpoint) or {}
    summary["status"] = endpoint.get("EndpointStatus", "unknown")
    if as_json:
        render.print_json({"plan": plan.as_dict(), **summary})
        return
    render.out.print(
        f"endpoint {spec.endpoint} {summary['status']} on {spec.config_name} "
        f"({spec.shape}) serving {model_data}",
        highlight=False,
    )


def scale(
    ctx: typer.Context,
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Auto-scale the endpoint: min/max instances, target invocations per instance (a
    serverless endpoint scales itself: one line says what to change instead)."""
    from dogclf import render
    from dogclf.aws.autoscaling import plan_scale, policy_configuration, resource_id
    from dogclf.aws.serverless import scale_note
    from dogclf.aws.session import AwsContext
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, show_plan
    from dogclf.plan import Plan

    cfg = state(ctx).config()
    aws = AwsContext.from_config(cfg)
    note = scale_note(aws, cfg)
    if note is not None:  # nothing to create: not an error, and the same with --dry-run
        if as_json:
            render.print_json({"mode": "serverless", "message": note, "plan": None})
        else:
            render.out.print(note, highlight=False)
        return
    plan = Plan(f"scale endpoint {cfg.names.endpoint}")
    plan_scale(plan, aws, cfg)
    a = cfg.autoscaling
    summary = {
        "resource_id": resource_id(cfg),
        "min_instances": a.min_instances,
        "max_instances": a.max_instances,
        "policy": cfg.names.scaling_policy,
        "target_tracking": policy_configuration(cfg),
    }
    if show_plan(plan, dry_run=dry_run, as_json=as_json, **summary):
        return
    apply_plan(plan)
    if as_json:
        render.print_json({"plan": plan.as_dict(), **summary})
        return
    render.out.print(
        f"{resource_id(cfg)}: {a.min_instances}..{a.max_instances} instances, target "
        f"{a.target_invocations_per_instance:g} invocations/instance/min "
        f"(cooldowns in {a.scale_in_cooldown} s, out {a.scale_out_cooldown} s)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("scale")(scale)
