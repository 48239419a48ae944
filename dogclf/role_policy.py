"""The SageMaker execution role's policy: what training jobs, tuning jobs and endpoints need.

dogclf never creates this role (it is the user's, `aws.role_arn`); this is the one definition
of the policy the README tells users to attach, generated into it by `python -m
dogclf.config_doc`. Plain data from the bucket and prefix alone, so core can render it.

Least privilege per prefix of the S3 layout (docs/architecture.md): jobs and endpoints read
everything under the project's prefix (data, code, models, checkpoints), write only what
SageMaker uploads (models/ = S3OutputPath, checkpoints/ = CheckpointConfig), and delete only
checkpoints: SageMaker mirrors the job's checkpoint folder to S3, deletions included.
"""

from __future__ import annotations

from typing import Any

POLICY_VERSION = "2012-10-17"
# Prefixes (below <prefix>/<stage>/) SageMaker writes to for dogclf's jobs.
WRITTEN = ("models", "checkpoints")
# ... and the one where it also deletes: local checkpoint files removed by the training core.
DELETED = ("checkpoints",)


def trust_policy(service: str = "sagemaker.amazonaws.com") -> dict[str, Any]:
    """A role only `service` may assume (SageMaker here; aws/iam.py's Lambda role too)."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }


def _objects(partition: str, bucket: str, prefix: str, stage: str, part: str = "") -> str:
    keys = "/".join(p for p in (prefix, stage, part) if p)
    return f"arn:{partition}:s3:::{bucket}/{keys}/*"


def _s3_statements(partition: str, bucket: str, prefix: str, stage: str) -> list[dict[str, Any]]:
    def under(*parts: str) -> list[str]:
        return [_objects(partition, bucket, prefix, stage, part) for part in parts]

    return [
        {
            "Sid": "ReadProject",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": _objects(partition, bucket, prefix, ""),
        },
        {
            "Sid": "WriteModelsAndCheckpoints",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": under(*WRITTEN),
        },
        {
            "Sid": "MirrorCheckpointDeletions",
            "Effect": "Allow",
            "Action": "s3:DeleteObject",
            "Resource": under(*DELETED),
        },
        {
            "Sid": "ListBucket",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:{partition}:s3:::{bucket}",
        },
    ]


def _runtime_statements(partition: str) -> list[dict[str, Any]]:
    return [
        {
            # SageMaker's own log groups: /aws/sagemaker/TrainingJobs, .../Endpoints/<name>
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            "Resource": f"arn:{partition}:logs:*:*:log-group:/aws/sagemaker/*",
        },
        {
            # Neither action has a resource to scope it to.
            "Sid": "MetricsAndRegistryLogin",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData", "ecr:GetAuthorizationToken"],
            "Resource": "*",
        },
        {
            # AWS's DLC images live in AWS's accounts, a BYO image in yours: any repository.
            "Sid": "PullImages",
            "Effect": "Allow",
            "Action": [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ],
            "Resource": f"arn:{partition}:ecr:*:*:repository/*",
        },
    ]


def execution_role_policy(
    bucket: str, prefix: str, *, stage: str = "*", partition: str = "aws"
) -> dict[str, Any]:
    """The inline policy for the SageMaker execution role; stage "*" covers every stage."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            *_s3_statements(partition, bucket, prefix, stage),
            *_runtime_statements(partition),
        ],
    }
