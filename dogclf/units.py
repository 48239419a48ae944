"""Byte units, one definition: AWS's limits ("6 MB" payloads, S3 part sizes) and
dogclf.toml's `*_mb` settings are all binary megabytes."""

from __future__ import annotations

MiB = 1024 * 1024
