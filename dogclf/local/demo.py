"""`dogclf demo`: the whole pipeline against the embedded AWS emulator, step by step.

Wiring only. Each step runs the real `dogclf` command with `--json`, so the summary can read
its result, through the runner the `demo` command passes in (commands/in_process.py: this
process, the same Typer group the console script uses, errors raised to here); what
plays AWS is the moto server (dogclf/local/emulator.py) with its training and Lambda
runtimes switched on, and the endpoint's traffic goes to what the endpoint's image runs:
AWS's PyTorch inference handler service (the default image) or a real `dogclf serve` process
(a BYO image), in a child process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogclf.errors import DogclfError

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
BUCKET = "dogclf-demo-artifacts"
STAGE = "demo"


@dataclass
class DemoOptions:
    workdir: Path
    data: Path | None = None
    keep: bool = False
    classes: int = 5
    per_class: int = 40
    epochs: int = 6
    image_size: int = 64
    faults: float = 0.0  # share of AWS requests that fail (moto_ext/faults.py); 0 = none
    fault_seed: int = 1
    # The emulated account's Lambda concurrency limit; a new account's is often 10, where
    # the demo's reserve cannot fit and lambda-deploy refuses in its plan.
    lambda_concurrency_limit: int | None = None
    serverless: bool = False  # a serverless endpoint instead of a real-time one


@dataclass
class StepReport:
    name: str
    ok: bool
    seconds: float
    created: str = ""
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "created": self.created,
            "error": self.error,
        }


@dataclass
class DemoResult:
    steps: list[StepReport] = field(default_factory=list)
    classes: int = 0
    training_metrics: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)  # per predict path, test split
    paths_agree: bool | None = None
    left_after_teardown: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    aws_code: dict[str, str] = field(default_factory=dict)  # step -> AWS's own code it ran
    top1: dict[str, list[str]] = field(default_factory=dict)  # per predict path, per image
    made: dict[str, list[str]] | None = None  # the account before teardown, kind -> names
    faults: dict[str, int] | None = None  # faults injected, by kind (with --faults)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    @property
    def failed_step(self) -> StepReport | None:
        return next((s for s in self.steps if not s.ok), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "steps": [s.as_dict() for s in self.steps],
            "classes": self.classes,
            "chance_accuracy": round(1 / self.classes, 4) if self.classes else None,
            "training_metrics": self.training_metrics,
            "test_accuracy": self.accuracy,
            "paths_agree": self.paths_agree,
            "left_after_teardown": self.left_after_teardown,
            "aws_code": self.aws_code,
            "top1": self.top1,
            "made": self.made,
            "faults": self.faults,
            "env": self.env,
        }


def demo_config(opts: DemoOptions) -> str:
    """dogclf.toml for the emulated account: small, CPU-sized, every step enabled."""
    return f"""# Written by `dogclf demo`: the pipeline on the embedded AWS emulator.
project = "dogclf"
stage = "{STAGE}"

[aws]
region = "{REGION}"
bucket = "{BUCKET}"
role_arn = "arn:aws:iam::{ACCOUNT_ID}:role/dogclf-demo-sagemaker-execution"
create_bucket = true

[data]
upload_workers = 8

[training]
arch = "tiny_cnn"
pretrained = false
freeze_backbone = false
epochs = {opts.epochs}
batch_size = 16
lr = 0.005
image_size = {opts.image_size}
patience = {opts.epochs}
instance_type = "ml.m5.xlarge"

[endpoint]
instance_type = "ml.m5.large"
initial_instance_count = 1
{_SERVERLESS if opts.serverless else ""}
[autoscaling]
min_instances = 1
max_instances = 3

[lambda]
reserved_concurrency = 5
provisioned_concurrency = 1
"""


# `demo --serverless`: 2048 MB, up to 5 requests at once, one kept warm.
_SERVERLESS = """mode = "serverless"
memory_mb = 2048
max_concurrency = 5
provisioned_concurrency = 1
"""


def runs_handler_service(image: str) -> bool:
    """Whether an endpoint's image is the SageMaker PyTorch inference image (the default,
    `endpoint.image_uri` unset), which serves through AWS's handler service; any other image
    is taken for dogclf's BYO image, which runs `dogclf serve`."""
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return repository == "pytorch-inference"


# `status` rows that say a thing is not there.
ABSENT = {"missing", "not configured"}


def account_inventory() -> dict[str, list[str]]:
    """What the emulated account holds, kind -> sorted names, listed service by service with
    dogclf's clients (they retry, as the rest of the demo): a check that does not trust
    dogclf's own view. Lambda versions and aliases show duplicates a retried create made."""
    from dogclf.aws.session import AwsContext

    ctx = AwsContext(region=REGION)
    sm, lam = ctx.client("sagemaker"), ctx.client("lambda")
    aas, iam = ctx.client("application-autoscaling"), ctx.client("iam")
    functions = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    found = {
        "s3 bucket": [b["Name"] for b in ctx.client("s3").list_buckets()["Buckets"]],
        "endpoint": [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]],
        "endpoint config": [
            c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]
        ],
        "sagemaker model": [m["ModelName"] for m in sm.list_models()["Models"]],
        "scalable target": [
            t["ResourceId"]
            for t in aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        ],
        "scaling policy": [
            p["PolicyName"]
            for p in aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        ],
        "lambda function": functions,
        "lambda version": [
            f"{v['FunctionName']}:{v['Version']}"
            for name in functions
            for v in lam.list_versions_by_function(FunctionName=name)["Versions"]
        ],
        "lambda alias": [
            f"{name}:{a['Name']}"
            for name in functions
            for a in lam.list_aliases(FunctionName=name)["Aliases"]
        ],
        "iam role": [r["RoleName"] for r in iam.list_roles()["Roles"]],
    }
    return {kind: sorted(names) for kind, names in found.items()}


# Kinds that go with their function, or are records rather than running resources.
NOT_LEFTOVERS = {"lambda version", "lambda alias"}


def account_leftovers() -> list[str]:
    """Everything in the emulated account that costs money or grants access. (Training jobs
    stay, as on AWS: they are records, not running resources.)"""
    return [
        f"{kind} {name}"
        for kind, names in account_inventory().items()
        if kind not in NOT_LEFTOVERS
        for name in names
    ]


MARKER = ".dogclf-demo"


def claim_workdir(workdir: Path) -> None:
    """Create the work folder, or reuse one an earlier demo made (its data/ and jobs/ are
    replaced). Any other non-empty folder is refused: the demo must never delete user files."""
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / MARKER).is_file():
        raise DogclfError(
            f"{workdir} is not empty and was not made by `dogclf demo`",
            "pass --workdir with a new or empty folder",
        )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by `dogclf demo`; safe to delete\n", encoding="utf-8")
    shutil.rmtree(workdir / "jobs", ignore_errors=True)


def isolated_environ() -> contextlib.AbstractContextManager[None]:
    """No AWS_* / DOGCLF_* variable of the caller's (profile, region, endpoints, dogclf
    overrides) for a block, but DOGCLF_DEBUG and where checked requests are counted:
    nothing of theirs can leak into the demo."""
    from dogclf.aws.request_check import LOG_ENV
    from dogclf.local.emulator import patched_environ

    keep = {k: v for k, v in os.environ.items() if k in ("DOGCLF_DEBUG", LOG_ENV)}
    return patched_environ(keep, scrub=("AWS_", "DOGCLF_"))


def accuracy(results: list[dict[str, Any]]) -> tuple[float, list[str]]:
    """Top-1 accuracy against the breed in each image's folder name; also the top-1 labels."""
    from dogclf.model.dataset import breed_name

    labels = []
    hits = 0
    for item in results:
        top = (item.get("predictions") or [{}])[0].get("label", "")
        labels.append(str(top))
        hits += top == breed_name(Path(item["image"]).parent.name)
    return (hits / len(results) if results else 0.0), labels


class Demo:
    """The sequence; each `step` runs one stage and records what it made and how long."""

    def __init__(
        self,
        opts: DemoOptions,
        narrate: Callable[[str], None],
        on_done: Callable[[StepReport], None] = lambda report: None,
        *,
        run: Callable[[Sequence[str]], str],
    ) -> None:
        self.opts = opts
        self.run_argv = run
        self.narrate = narrate
        self.on_done = on_done
        self.result = DemoResult()
        self.workdir = opts.workdir.resolve()
        self.config = self.workdir / "dogclf.toml"
        self.data = (opts.data or self.workdir / "data").resolve()
        self.emulator: Any = None
        self.server: Any = None
        self.total_steps = 0
        self._labels: dict[str, list[str]] = {}

    def command(self, *args: str) -> Any:
        """`dogclf --config CONFIG ARGS --json`; returns its parsed JSON (None if it printed
        nothing). A failing command's DogclfError reaches the step that ran it."""
        text = self.run_argv(["--config", str(self.config), *args, "--json"])
        return json.loads(text) if text.strip() else None

    def step(self, name: str, what: str, fn: Callable[[], str]) -> None:
        index = len(self.result.steps) + 1
        self.narrate(f"[{index}/{self.total_steps}] {name}: {what}")
        started = time.perf_counter()
        try:
            created = fn()
        except DogclfError as exc:
            report = StepReport(name, False, time.perf_counter() - started, error=exc.message)
            self.result.steps.append(report)
            self.on_done(report)
            raise
        report = StepReport(name, True, time.perf_counter() - started, created)
        self.result.steps.append(report)
        self.on_done(report)

    # ------------------------------------------------------------------ the steps
    def make_data(self) -> str:
        from dogclf.training.synthetic import make_dataset

        if self.opts.data is None:
            if self.data.exists():
                shutil.rmtree(self.data)
            make_dataset(
                self.data,
                classes=self.opts.classes,
                per_class=self.opts.per_class,
                size_range=(96, 160),
                seed=7,
            )
        elif not self.data.is_dir():
            raise DogclfError(f"--data {self.data} is not a folder", "pass a dogImages folder")
        breeds = sorted(p.name for p in (self.data / "train").iterdir() if p.is_dir())
        self.result.classes = len(breeds)
        images = sum(1 for p in self.data.rglob("*") if p.is_file())
        return f"{images} images of {len(breeds)} breeds in {self.data}"

    def start_emulator(self) -> str:
        from dogclf.local import moto_ext
        from dogclf.local.emulator import start_emulator
        from dogclf.local.moto_ext.lambda_concurrency import set_lambda_concurrency_limit

        self.emulator = start_emulator()
        moto_ext.enable_training_runtime(self.emulator.url, str(self.workdir / "jobs"))
        if self.opts.lambda_concurrency_limit is not None:
            set_lambda_concurrency_limit(
                self.emulator.url, self.opts.lambda_concurrency_limit, region=REGION
            )
        flaky = ""
        if self.opts.faults:
            # Lost answers at half the rate; a new role takes 2 s to propagate.
            self.emulator.set_faults(
                self.opts.faults,
                after_rate=self.opts.faults / 2,
                role_delay_s=2.0,
                seed=self.opts.fault_seed,
                kinds=("throttle", "500", "503"),
            )
            flaky = f"; {self.opts.faults:.0%} of requests fail (throttling, 500, 503, lost)"
        self.config.write_text(demo_config(self.opts), encoding="utf-8")
        self.result.env = {
            **self.emulator.env(),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "DOGCLF_CONFIG": str(self.config),
        }
        os.environ.update(self.result.env)
        return f"moto {moto_ext.MOTO_VERSION} at {self.emulator.url}; config {self.config}{flaky}"

    def upload(self) -> str:
        out = self.command("upload", str(self.data))
        return f"{out['uploaded']} files -> {out['uri']} (bucket created, private, TLS-only)"

    def train(self) -> str:
        out = self.command("train-sagemaker", "--poll-interval", "0.5")
        self.result.training_metrics = dict(out.get("metrics") or {})
        self.model_data = str(out["model_data"])
        test = self.result.training_metrics.get("test_accuracy")
        shown = f"; test_accuracy {test:.3f}" if test is not None else ""
        self.result.aws_code["train-sagemaker"] = (
            "the SageMaker training launcher "
            f"({_pinned('sagemaker-training')}, {_pinned('sagemaker-pytorch-training')})"
        )
        return f"training job {out['job']} {out['status']} -> {self.model_data}{shown}"

    def deploy(self) -> str:
        out = self.command("deploy", "--poll-interval", "0")
        self.model_name = str(out["model"])
        return (
            f"model {out['model']}, config {out['endpoint_config']}, endpoint "
            f"{out['endpoint']} ({out['shape']}, {out['status']})"
        )

    def serve(self) -> str:
        """Start what the endpoint's image runs, with the model's own environment."""
        from dogclf.aws.session import AwsContext
        from dogclf.local import moto_ext

        sm = AwsContext(region=REGION).client("sagemaker")
        container = sm.describe_model(ModelName=self.model_name)["PrimaryContainer"]
        if runs_handler_service(container["Image"]):
            answered_by = self._serve_handler_service(container)
            self.result.aws_code["endpoint"] = answered_by
        else:
            answered_by = self._serve_byo()
        runtime = {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.server.url}
        self.result.env.update(runtime)
        os.environ.update(runtime)
        # The emulated Lambda's boto3 must reach the same endpoint traffic.
        moto_ext.enable_lambda_runtime(self.emulator.url, runtime)
        return f"{answered_by} at {self.server.url} answers the endpoint's invocations"

    def _serve_handler_service(self, container: Mapping[str, Any]) -> str:
        """The PyTorch inference image: AWS's handler service over the model.tar.gz that
        CreateModel named, in the container's Environment (SAGEMAKER_PROGRAM, limits)."""
        from dogclf.aws.artifacts import parse_s3_uri
        from dogclf.aws.session import AwsContext
        from dogclf.local.serve_process import start_pytorch_inference

        endpoint = self.workdir / "endpoint"
        endpoint.mkdir(exist_ok=True)
        bucket, key = parse_s3_uri(container["ModelDataUrl"])
        tar = endpoint / "model.tar.gz"
        AwsContext(region=REGION).client("s3").download_file(bucket, key, str(tar))
        self.server = start_pytorch_inference(
            tar,
            endpoint,
            env={**os.environ, **(container.get("Environment") or {})},
            region=REGION,
            account=ACCOUNT_ID,
            log_path=self.workdir / "serve.log",
        )
        return f"AWS's handler service ({_pinned('sagemaker-pytorch-inference')})"

    def _serve_byo(self) -> str:
        """A bring-your-own image: the dogclf serve container runs `dogclf serve`."""
        from dogclf.local.serve_process import start_serve

        self.server = start_serve(
            self.model_data,
            env=dict(os.environ),
            extra_args=("--max-batch-wait-ms", "2"),
            log_path=self.workdir / "serve.log",
        )
        return "dogclf serve"

    def scale(self) -> str:
        out = self.command("scale")
        if out.get("mode") == "serverless":
            return str(out["message"])
        t = out["target_tracking"]
        return (
            f"{out['resource_id']}: {out['min_instances']}..{out['max_instances']} instances, "
            f"target {t['TargetValue']:g} invocations/instance/min"
        )

    def lambda_deploy(self) -> str:
        out = self.command("lambda-deploy")
        fn = out["function"] or {}
        alias = fn.get("alias") or {}
        role = fn.get("role") or {}
        policies = ", ".join(role.get("inline_policies") or [])
        return (
            f"function {fn.get('name')}, role {role.get('name')} (only {policies}), "
            f"alias {alias.get('name')} -> v{alias.get('version')}, "
            f"reserved {fn.get('reserved_concurrency')}, provisioned "
            f"{(fn.get('provisioned_concurrency') or {}).get('requested', 0)}"
        )

    def predict(self, via: str) -> str:
        test = self.data / "test"
        out = self.command("predict", str(test), "--via", via)
        acc, labels = accuracy(out)
        self.result.accuracy[via] = round(acc, 4)
        self._labels[via] = labels
        self.result.top1[via] = labels
        if via == "lambda":
            self.result.aws_code["predict --via lambda"] = (
                f"the Lambda runtime interface client ({_pinned('awslambdaric')})"
            )
        if len(self._labels) == 2:
            first, second = self._labels.values()
            self.result.paths_agree = first == second
        return f"{len(out)} test images, top-1 accuracy {acc:.3f} (chance {1 / self.result.classes:.3f})"

    def status(self) -> str:
        out = self.command("status")
        running = [r for r in out["resources"] if r.get("running")]
        cost = out["hourly_cost"]
        line = (
            f"{len(out['resources'])} resources, {len(running)} billed by the hour: "
            f"${cost['known_usd']:.3f}/hour if this were AWS"
        )
        for r in out["resources"]:
            crossover = (r.get("pricing") or {}).get("crossover_inference_seconds_per_hour")
            if crossover is not None:
                line += (
                    f"; serverless {r['name']}: real-time is cheaper above "
                    f"{crossover:,.0f} s of inference an hour"
                )
        return line

    def teardown(self) -> str:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.result.made = account_inventory()
        out = self.command("teardown", "--yes", "--data") or {}
        after = self.command("status")
        left = [f"{r['kind']} {r['name']}" for r in after["resources"] if r["state"] not in ABSENT]
        left += account_leftovers()
        self.result.left_after_teardown = left
        if left:
            raise DogclfError("teardown left resources behind: " + ", ".join(left))
        return (
            f"deleted {len(out.get('deleted', []))} resources; neither `status` nor a listing "
            "of every service finds anything left"
        )

    # ------------------------------------------------------------------ the sequence
    def run(self) -> DemoResult:
        steps: list[tuple[str, str, Callable[[], str]]] = [
            ("dataset", "a small dogImages-layout dataset", self.make_data),
            ("emulator", "the embedded AWS emulator on loopback", self.start_emulator),
            ("upload", "validate the dataset and sync it to S3", self.upload),
            ("train-sagemaker", "a SageMaker training job, run by the emulator", self.train),
            ("deploy", "model, endpoint config and endpoint", self.deploy),
            (
                "serve",
                "the endpoint's traffic: what its image runs, in a child process",
                self.serve,
            ),
            ("scale", "auto-scaling on the endpoint variant", self.scale),
            (
                "lambda-deploy",
                "least-privilege Lambda in front of the endpoint",
                self.lambda_deploy,
            ),
            (
                "predict --via lambda",
                "the test split through the Lambda",
                lambda: self.predict("lambda"),
            ),
            (
                "predict --via endpoint",
                "the test split through the endpoint",
                lambda: self.predict("endpoint"),
            ),
            ("status", "what exists and what it would cost", self.status),
        ]
        if not self.opts.keep:
            steps.append(("teardown", "delete everything, then check", self.teardown))
        self.total_steps = len(steps)
        claim_workdir(self.workdir)  # before any step: a refusal is the whole command's error
        try:
            for name, what, fn in steps:
                self.step(name, what, fn)
        except DogclfError:
            pass  # recorded in the step's report; the caller names it
        finally:
            if self.emulator is not None and self.opts.faults:
                self.result.faults = self.emulator.fault_counts()
            if not (self.opts.keep and self.result.ok):
                self.close()
        return self.result

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None


def _pinned(package: str) -> str:
    """`name version` of one of the AWS packages the emulator checked at start."""
    from dogclf.local.pins import EMULATOR_PINS

    return f"{package} {EMULATOR_PINS[package]}"
