"""The one place that builds boto3 clients and turns AWS failures into DogclfError.

Every other module in dogclf/aws/ gets its clients from an `AwsContext`, so retries,
timeouts, region/profile precedence and error wording are decided here once; so is what
"not found" means: an answer for a describe (`get_or_none`), done for a delete (`deleter`).
"""

from __future__ import annotations

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


def client_config(**overrides: Any) -> botocore.config.Config:
    """Adaptive retries (client-side rate limiting + backoff) and bounded timeouts."""
    settings: dict[str, Any] = {
        "retries": {"mode": "adaptive", "max_attempts": 8},
        "connect_timeout": 10,
        "read_timeout": 70,
        "user_agent_extra": f"dogclf/{__version__}",
    }
    settings.update(overrides)
    return botocore.config.Config(**settings)


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
            self._clients[key] = self.session.client(  # type: ignore[call-overload]
                service, config=client_config(**config), endpoint_url=self.endpoint_url
            )
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
    """Failures before AWS answered: credentials, connection, timeouts."""
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
