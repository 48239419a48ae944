"""The one place that builds boto3 clients and turns AWS failures into DogclfError.

Every other module in dogclf/aws/ gets its clients from an `AwsContext`, so retries,
timeouts, region/profile precedence and error wording are decided here once; so is what
"not found" means: an answer for a describe (`get_or_none`), done for a delete (`deleter`).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from dogclf import __version__
from dogclf.aws import request_check
from dogclf.errors import AwsError, ConfigError, NotFoundError
from dogclf.plan import Action, Step

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

T = TypeVar("T")

# Codes meaning "that thing is not there"; callers planning a create treat them as absent.
NOT_FOUND_CODES = {
    "NoSuchBucket",
    "NoSuchKey",
    "404",
    "NotFound",
    "NoSuchEntity",
    "ResourceNotFoundException",
    "ResourceNotFound",
    "ObjectNotFound",
    # S3 bucket settings that were never set read as "not found".
    "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchBucketPolicy",
    "NoSuchTagSet",
    "ObjectNotFoundException",  # Application Auto Scaling
    "ProvisionedConcurrencyConfigNotFoundException",  # Lambda
}
# S3's AccessDenied does not name the action; these operations need another action's name.
S3_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "DeleteObjects": "s3:DeleteObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
}
# SageMaker says "Could not find endpoint ..." with a ValidationException.
NOT_FOUND_MESSAGE = re.compile(r"(could not find|does not exist|not found)", re.IGNORECASE)


# In the User-Agent of the embedded emulator's own clients (training runtime, ...).
INTERNAL_AGENT = "dogclf-emulator-internal"


def client_config(**overrides: Any) -> botocore.config.Config:
    """Adaptive retries (client-side rate limiting + backoff) and bounded timeouts; what
    botocore's retries do not cover (IAM propagation, a create whose answer was lost) is
    added per client by `attach_retries`."""
    settings: dict[str, Any] = {
        "retries": {"mode": "adaptive", "max_attempts": 10},
        "connect_timeout": 10,
        "read_timeout": 70,
        "user_agent_extra": f"dogclf/{__version__}",
    }
    settings.update(overrides)
    return botocore.config.Config(**settings)


# ---------------------------------------------------------------- retries botocore lacks

# A role created a moment ago is not assumable until IAM has propagated it (seconds):
# (operation, error code, what the message says), retried here for every caller.
ROLE_NOT_READY = [
    (
        {"CreateFunction", "UpdateFunctionConfiguration"},
        "InvalidParameterValueException",
        "cannot be assumed",
    ),
    (
        {"CreateTrainingJob", "CreateModel", "CreateHyperParameterTuningJob"},
        "ValidationException",
        "could not assume role",
    ),
]
# IAM propagation takes seconds; past this it is not propagation (a missing role or trust
# reads the same). The emulator, whose roles propagate in set seconds, sets a shorter bound.
ROLE_WAIT_ENV = "DOGCLF_ROLE_WAIT_S"
ROLE_WAIT_MAX_S = 60.0

# A create retried after an unanswered attempt (a 5xx, a dropped connection) may find what
# that attempt made: "already exists" then means done. operation -> (the read that returns
# it, the request members the read takes, the response members to keep; None: all).
ADOPT_ON_RETRY: dict[str, tuple[str, tuple[str, ...], tuple[str, ...] | None]] = {
    "CreateRole": ("get_role", ("RoleName",), None),
    "CreateFunction": ("get_function_configuration", ("FunctionName",), None),
    "CreateAlias": ("get_alias", ("FunctionName", "Name"), None),
    "CreateFunctionUrlConfig": ("get_function_url_config", ("FunctionName", "Qualifier"), None),
    "CreateModel": ("describe_model", ("ModelName",), ("ModelArn",)),
    "CreateEndpointConfig": (
        "describe_endpoint_config",
        ("EndpointConfigName",),
        ("EndpointConfigArn",),
    ),
    "CreateEndpoint": ("describe_endpoint", ("EndpointName",), ("EndpointArn",)),
    "CreateTrainingJob": ("describe_training_job", ("TrainingJobName",), ("TrainingJobArn",)),
    "CreateHyperParameterTuningJob": (
        "describe_hyper_parameter_tuning_job",
        ("HyperParameterTuningJobName",),
        ("HyperParameterTuningJobArn",),
    ),
    "CreateLogGroup": ("", (), ()),
    "CreateBucket": ("", (), ()),
    "AddPermission": ("", (), ()),  # the statement is in the policy; its answer is rebuilt
}
# Codes that say "it exists" alone; and codes that say it when the message does.
EXISTS_BY_CODE = {
    "EntityAlreadyExists",
    "ResourceAlreadyExistsException",
    "BucketAlreadyOwnedByYou",
}
ALREADY_EXISTS_CODES = {
    "ResourceConflictException",
    "ConflictException",  # moto's CreateAlias (AWS: ResourceConflictException)
    "ResourceInUse",
    "ValidationException",
}
ALREADY_EXISTS_MESSAGE = re.compile(r"already exist|must be unique|\bexists\b", re.IGNORECASE)


def attach_retries(client: Any) -> None:
    """Register this module's retry handlers on one client (see ROLE_NOT_READY and
    ADOPT_ON_RETRY); botocore's own retries stay as `client_config` sets them."""
    client.meta.events.register(
        "needs-retry", _retry_while_role_propagates, unique_id="dogclf-role-propagation"
    )
    client.meta.events.register(
        "before-parameter-build", _remember_params, unique_id="dogclf-remember-params"
    )
    client.meta.events.register(
        "after-call", functools.partial(_adopt_after_lost_answer, client), unique_id="dogclf-adopt"
    )


def _error_of(response: Any) -> tuple[int, str, str]:
    http, parsed = response
    error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
    return http.status_code, str(error.get("Code", "")), str(error.get("Message", ""))


def _retry_while_role_propagates(
    response: Any, operation: Any, attempts: int, request_dict: dict[str, Any], **_: Any
) -> float | None:
    """needs-retry: a delay while a fresh role propagates (bounded), else None (botocore's
    own handler decides). Also notes an unanswered attempt for `_adopt_after_lost_answer`."""
    context = request_dict.setdefault("context", {})
    if response is None or response[0].status_code >= 500:
        context["dogclf_unanswered"] = True
        return None
    _status, code, message = _error_of(response)
    if not any(
        operation.name in ops and code == c and text in message.lower()
        for ops, c, text in ROLE_NOT_READY
    ):
        return None
    waited = float(context.get("dogclf_role_waited", 0.0))
    delay = min(0.5 * 2 ** (attempts - 1), 8.0)
    if waited + delay > float(os.environ.get(ROLE_WAIT_ENV) or ROLE_WAIT_MAX_S):
        return None
    context["dogclf_role_waited"] = waited + delay
    return delay


def _adopt_after_lost_answer(
    client: Any, http_response: Any, parsed: dict[str, Any], model: Any, context: Any, **_: Any
) -> None:
    """after-call: a create that answers "already exists" after an unanswered attempt of
    the same call made the thing itself; answer as the create would have (read it back)."""
    if http_response.status_code < 300 or not (context or {}).get("dogclf_unanswered"):
        return
    _status, code, message = _error_of((http_response, parsed))
    adopt = ADOPT_ON_RETRY.get(model.name)
    if adopt is None or code not in ALREADY_EXISTS_CODES | EXISTS_BY_CODE:
        return
    if code not in EXISTS_BY_CODE and not ALREADY_EXISTS_MESSAGE.search(message):
        return
    params = context.get("dogclf_params", {})
    answer = _read_back(client, model.name, adopt, params)
    if answer is None:
        return
    metadata = parsed.get("ResponseMetadata", {})
    parsed.clear()
    parsed.update(answer, ResponseMetadata=metadata)
    http_response.status_code = 200  # botocore raises for >= 300 after this event


def _read_back(
    client: Any,
    operation: str,
    adopt: tuple[str, tuple[str, ...], tuple[str, ...] | None],
    params: dict[str, Any],
) -> dict[str, Any] | None:
    method, keys, keep = adopt
    if operation == "AddPermission":
        where = {k: params[k] for k in ("FunctionName", "Qualifier") if k in params}
        policy = json.loads(client.get_policy(**where)["Policy"])
        found = [s for s in policy["Statement"] if s.get("Sid") == params.get("StatementId")]
        return {"Statement": json.dumps(found[0])} if found else None
    if operation == "CreateBucket":
        return {"Location": f"/{params.get('Bucket', '')}"}
    if not method:
        return {}
    answer = getattr(client, method)(**{k: params[k] for k in keys if k in params})
    answer.pop("ResponseMetadata", None)
    return answer if keep is None else {k: answer[k] for k in keep if k in answer}


def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["dogclf_params"] = dict(params)


class AwsContext:
    """A boto3 session for one command run, with cached clients.

    Precedence: AWS_PROFILE / AWS_REGION / AWS_DEFAULT_REGION from the environment win over
    `aws.profile` / `aws.region` in dogclf.toml, so a CI runner can redirect a checked-in
    config. Endpoint overrides (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>) are read by
    botocore itself and never shadowed.
    """

    def __init__(
        self,
        profile: str | None = None,
        region: str | None = None,
        *,
        endpoint_url: str | None = None,
        credentials: dict[str, str] | None = None,
    ) -> None:
        env_profile = os.environ.get("AWS_PROFILE")
        env_region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.profile = None if credentials else env_profile or profile
        # Set only for the embedded emulator's own threads, which must not depend on the
        # process environment (the CLI may be pointed somewhere else).
        self.endpoint_url = endpoint_url
        try:
            self.session = boto3.Session(
                profile_name=self.profile or None,
                region_name=(region if credentials else env_region or region) or None,
                **(credentials or {}),  # type: ignore[arg-type]
            )
        except botocore.exceptions.ProfileNotFound:
            raise AwsError(
                f"AWS profile {self.profile!r} is not configured",
                "run `aws configure --profile NAME`, or unset AWS_PROFILE / aws.profile",
            ) from None
        if not self.session.region_name:
            raise AwsError(
                "no AWS region is set",
                "set aws.region in dogclf.toml, or export AWS_REGION=us-east-1",
            )
        self.region: str = self.session.region_name
        self._clients: dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg: DogclfConfig) -> AwsContext:
        return cls(profile=cfg.aws.profile, region=cfg.aws.region)

    def client(self, service: str, **config: Any) -> Any:
        key = service if not config else f"{service}:{sorted(config.items())}"
        if key not in self._clients:
            if self.endpoint_url:  # the emulator's own calls: its fault injector skips them
                config.setdefault("user_agent_extra", f"dogclf/{__version__} {INTERNAL_AGENT}")
            client = self.session.client(  # type: ignore[call-overload]
                service, config=client_config(**config), endpoint_url=self.endpoint_url
            )
            attach_retries(client)
            if request_check.enabled():
                request_check.attach(client)
            self._clients[key] = client
        return self._clients[key]

    @cached_property
    def account_id(self) -> str:
        with aws_errors("look up the AWS account (sts:GetCallerIdentity)"):
            return str(self.client("sts").get_caller_identity()["Account"])

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_not_found(exc: BaseException) -> bool:
    if not isinstance(exc, botocore.exceptions.ClientError):
        return False
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return code in NOT_FOUND_CODES or (
        code in {"ValidationException", "ValidationError"}
        and bool(NOT_FOUND_MESSAGE.search(message))
    )


ACCESS_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"}
# (codes, why (formatted with message and operation), what to do), checked in order.
CLIENT_ERRORS: list[tuple[set[str], str, str]] = [
    (
        {"ExpiredToken", "ExpiredTokenException", "RequestExpired"},
        "the AWS credentials have expired",
        "refresh them (`aws sso login`, or new session credentials) and retry",
    ),
    (
        {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"},
        "AWS does not recognise these credentials",
        "check AWS_PROFILE / the access key, and that the region is enabled for the account",
    ),
    (
        {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"},
        "the bucket is in another region ({message})",
        "set aws.region to the bucket's region, or use a bucket in this region",
    ),
    (
        {"ThrottlingException", "Throttling", "TooManyRequestsException", "SlowDown"},
        "AWS throttled the requests ({operation})",
        "retry in a minute",
    ),
    (
        {"ResourceLimitExceeded", "LimitExceededException", "ServiceQuotaExceededException"},
        "an AWS quota was hit: {message}",
        "request a quota increase in the Service Quotas console, or lower the count",
    ),
]


def translate(exc: BaseException, what: str) -> AwsError:
    """One DogclfError for a botocore failure: what failed, why, and what to do."""
    if not isinstance(exc, botocore.exceptions.ClientError):
        return _translate_transport(exc, what)
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    operation = exc.operation_name
    if code in ACCESS_DENIED_CODES or "not authorized to perform" in message:
        action = re.search(r"perform: ([\w-]+:[\w-]+)", message)
        needed = (
            action.group(1) if action else S3_ACTIONS.get(operation, f"the {operation} permission")
        )
        return AwsError(
            f"cannot {what}: access denied ({needed})",
            f"grant {needed} to the identity you run dogclf as (IAM policy), or use another profile",
        )
    for codes, why, fix in CLIENT_ERRORS:
        if code in codes:
            return AwsError(
                f"cannot {what}: " + why.format(message=message, operation=operation), fix
            )
    if is_not_found(exc):
        return NotFoundError(
            f"cannot {what}: not found: {message or code}", "check the name and region"
        )
    return AwsError(f"cannot {what}: {code}: {message}", f"the failing call was {operation}")


def _translate_transport(exc: BaseException, what: str) -> AwsError:
    """Failures before AWS answered: credentials, connection, timeouts, a request the
    service model refuses."""
    if isinstance(exc, request_check.RequestCheckError):
        return AwsError(
            f"cannot {what}: {exc}",
            "AWS would refuse this request: correct the setting the value came from",
        )
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return AwsError(
            f"cannot {what}: no AWS credentials found",
            "run `aws configure` or `aws sso login`, or export AWS_PROFILE",
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return AwsError(
            f"cannot {what}: no connection to {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}",
            "check the network, aws.region, and any AWS_ENDPOINT_URL* variables",
        )
    if isinstance(
        exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError
    ):
        return AwsError(f"cannot {what}: AWS did not answer in time", "retry; check the network")
    return AwsError(f"cannot {what}: {exc}", "rerun with --debug for details")


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """`with aws_errors("create the endpoint"):` turns botocore failures into AwsError."""
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise translate(exc, what) from exc


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with aws_errors(what):
        return fn(*args, **kwargs)


def get_or_none(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """A describe call where "not found" is an answer (None), not an error."""
    try:
        return fn(*args, **kwargs)
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise translate(exc, what) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise translate(exc, what) from exc


def deleter(
    what: str,
    fn: Callable[..., Any],
    /,
    *,
    done_if: Callable[[BaseException], bool] = is_not_found,
    **kwargs: Any,
) -> Callable[[], None]:
    """A delete step's action, `fn(**kwargs)`, where "already gone" counts as done.

    Every delete dogclf plans goes through here, so teardown (and a deploy's cleanup) can
    run twice. `done_if` widens "gone" for calls that say it otherwise (a job already ended).
    """

    def run() -> None:
        try:
            fn(**kwargs)
        except botocore.exceptions.ClientError as exc:
            if not done_if(exc):
                raise translate(exc, what) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, what) from exc

    return run


def delete_step(
    resource: str,
    name: str,
    message: str,
    what: str,
    fn: Callable[..., Any],
    /,
    *,
    done_if: Callable[[BaseException], bool] = is_not_found,
    **kwargs: Any,
) -> Step:
    """A plan's DELETE step whose action is `deleter(what, fn, **kwargs)`."""
    return Step(
        Action.DELETE, resource, name, message, deleter(what, fn, done_if=done_if, **kwargs)
    )


def require_role(cfg: DogclfConfig) -> str:
    if not cfg.aws.role_arn:
        raise ConfigError(
            "aws.role_arn is not set: SageMaker needs an execution role",
            'set [aws] role_arn = "arn:aws:iam::<account>:role/<name>" in dogclf.toml '
            "(a role SageMaker can assume, with access to the bucket)",
        )
    return cfg.aws.role_arn


def tag_list(cfg: DogclfConfig) -> list[dict[str, str]]:
    """cfg.tags in the [{"Key", "Value"}] form SageMaker and S3 take."""
    return [{"Key": k, "Value": v} for k, v in sorted(cfg.tags.items())]
