"""What moto 5.2.5 lacks or gets wrong for dogclf, patched into the in-process moto server.

Written against moto 5.2.5 (pinned in pyproject's `emulator` extra); `install()` refuses
other versions rather than patch internals that may have moved. Most patches add an API
operation moto lacks; some override what moto already does where it differs from AWS in a
way dogclf's commands would see. One module per concern, each saying exactly what it adds
and what it overrides:

- sagemaker_lifecycle: scripted statuses (a POST route), DescribeTrainingJob and
  DescribeEndpoint stepping through them, Create/DeleteEndpoint overridden for scripts,
  UpdateEndpoint and StopTrainingJob added;
- instance_types: CreateEndpointConfig checks InstanceType against botocore's enum, not
  moto's shorter list (which refuses ml.g5 and every newer family);
- serverless: UpdateEndpoint refuses to turn an instance-based endpoint serverless, and
  CreateEndpointConfig what AWS refuses in a ServerlessConfig variant;
- training_runtime: CreateTrainingJob overridden (keeps MetricDefinitions, starts a
  scripted job, or really runs the job through dogclf/local/job_executor.py once enabled);
- tuning: a tuning job starts training jobs and reports the best one; lists and stops them;
- lambda_concurrency: provisioned concurrency (Put/Get/Delete/List), capped by the reserved;
  the account's concurrency quota (GetAccountSettings, a settable limit, AWS's refusals);
- function_urls: a resource policy per alias as AWS keeps it, and function URLs served
  (checked against AuthType and that policy, run through Invoke);
- lambda_runtime: Invoke runs a deployed Python zip under AWS's awslambdaric, in warm
  execution environments (execution_environment, environment_pool) against a loopback
  Runtime API (runtime_api);
- s3_policy: TLS-only bucket policy statements no longer deny everything;
- faults: throttling, 500/503, lost answers and IAM propagation delays at a set rate
  (a WSGI middleware start_emulator puts around moto's app; its route set here);
- routes: the /moto-api routes' plumbing, and post_json for their clients.

Used by the test harness, the benchmarks and `dogclf demo` (dogclf/local/emulator.py).
"""

from __future__ import annotations

from dogclf.local.moto_ext import (
    faults,
    function_urls,
    instance_types,
    lambda_concurrency,
    lambda_runtime,
    s3_policy,
    sagemaker_lifecycle,
    serverless,
    training_runtime,
    tuning,
)
from dogclf.local.moto_ext.lambda_runtime import LAMBDA_RUNTIME_PATH, enable_lambda_runtime
from dogclf.local.moto_ext.routes import post_json
from dogclf.local.moto_ext.sagemaker_lifecycle import (
    SAGEMAKER_SCRIPT_PATH,
    TRAINING_LOG_GROUP,
    script_sagemaker,
)
from dogclf.local.moto_ext.training_runtime import TRAINING_RUNTIME_PATH, enable_training_runtime
from dogclf.local.pins import EMULATOR_PINS, check_pins

__all__ = [
    "LAMBDA_RUNTIME_PATH",
    "MOTO_VERSION",
    "SAGEMAKER_SCRIPT_PATH",
    "TRAINING_LOG_GROUP",
    "TRAINING_RUNTIME_PATH",
    "enable_lambda_runtime",
    "enable_training_runtime",
    "install",
    "post_json",
    "script_sagemaker",
]

# The one pin (local/pins.py), named here for the demo's summary line.
MOTO_VERSION = EMULATOR_PINS["moto"]

_installed = False


def install() -> None:
    """Apply every module's patches once per process, after checking moto's version."""
    global _installed
    if _installed:
        return

    check_pins(("moto",))
    for module in (
        sagemaker_lifecycle,
        instance_types,
        serverless,  # wraps sagemaker_lifecycle's UpdateEndpoint
        training_runtime,
        tuning,
        lambda_concurrency,
        s3_policy,
        lambda_runtime,
        function_urls,
        faults,
    ):
        module.install()
    _installed = True
