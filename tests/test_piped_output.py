"""Issue 16: output read later from a log (`make demo > log 2>&1`, a CI step) keeps every name,
ARN, URI and number whole on one line, so `grep NAME log` finds each line that names it; a
terminal keeps rich's tables at its width; NO_COLOR and `--no-color` take the colour away.

Every command here is the real CLI in a child process, its stdout and stderr a file or a
pipe (no terminal), or a pseudo-terminal where a terminal is the point.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import boto3
import pytest

from dogclf.local.emulator import Emulator

# Long names, as a real project/stage has them: at 80 columns rich folded each of them.
PROJECT, STAGE = "dogclf-piped-output", "integration-check"
BUCKET = "dogclf-piped-output-integration-check-artifacts"
ROLE = "arn:aws:iam::123456789012:role/dogclf-piped-output-integration-sagemaker-execution"
CONFIG = f"""
project = "{PROJECT}"
stage = "{STAGE}"

[aws]
bucket = "{BUCKET}"
role_arn = "{ROLE}"
create_bucket = true
"""
# Table borders and the spaces between cells; names hold none of these.
CELL_EDGES = re.compile(r"[\s│┃┆┊║|]+")
COLOR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])[0-9;]*m")  # a foreground colour


def dogclf(*args: str, cwd: Path, log: Path) -> None:
    """`dogclf ARGS >> log 2>&1`; it must succeed."""
    env = {k: v for k, v in os.environ.items() if k != "DOGCLF_CONFIG"}
    env["COLUMNS"] = "80"  # as a CI runner may set it: off a terminal it must not matter
    with log.open("a", encoding="utf-8") as out:
        code = subprocess.call(
            [sys.executable, "-m", "dogclf", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,  # no terminal anywhere: rich then used 80 columns
            stdout=out,
            stderr=out,
        )
    assert code == 0, log.read_text(encoding="utf-8")[-3000:]


def assert_whole(text: str, names: Iterable[str]) -> None:
    """Each name stands whole on a line, no line holds a cut-off start of one (a fold), and
    nothing is ellipsized."""
    names = {n for n in names if n}
    assert "…" not in text, [line for line in text.splitlines() if "…" in line]
    missing = [n for n in names if not any(n in line for line in text.splitlines())]
    assert not missing, f"not whole on any line: {missing}"
    cut = {
        token
        for line in text.splitlines()
        for token in CELL_EDGES.split(line)
        if len(token) >= 8 and token not in names
        for name in names
        if name.startswith(token) and name != token and not _ends_a_word(name, token)
    }
    assert not cut, f"cut off: {sorted(cut)}"


def _ends_a_word(name: str, token: str) -> bool:
    """`dogclf-demo` inside `dogclf-demo-predict`, or a prefix `s3://bucket/dogclf/demo/`
    of a key under it, is a name of its own, not a fold."""
    return not (token[-1].isalnum() and name[len(token)].isalnum())


def inventory() -> dict[str, list[str]]:
    from dogclf.local.demo import account_inventory

    return account_inventory()


@pytest.mark.slow
def test_a_piped_pipeline_keeps_every_name_whole_and_a_terminal_keeps_its_tables(
    aws: Emulator, tmp_path: Path
) -> None:
    from dogclf.training.synthetic import make_dataset

    (tmp_path / "dogclf.toml").write_text(CONFIG)
    make_dataset(tmp_path / "data", classes=3, per_class=3, size_range=(24, 32))
    log = tmp_path / "pipeline.log"
    dogclf("upload", "data", cwd=tmp_path, log=log)
    model = f"s3://{BUCKET}/dogclf/{STAGE}/models/manual/model.tar.gz"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=model.split("/", 3)[3], Body=b"a model")
    dogclf("deploy", "--model", model, "--poll-interval", "0", cwd=tmp_path, log=log)
    dogclf("scale", cwd=tmp_path, log=log)
    dogclf("lambda-deploy", cwd=tmp_path, log=log)
    made = inventory()
    dogclf("status", cwd=tmp_path, log=log)
    # A terminal of 80 columns still gets rich's table, folded to fit, in colour.
    screen = on_terminal(["teardown", "--dry-run"], cwd=tmp_path)
    shown = strip_ansi(screen)
    assert re.search(r"action\s.*resource\s.*name", shown), shown
    assert max(len(line) for line in shown.splitlines()) <= 80, shown
    dogclf("teardown", "--yes", cwd=tmp_path, log=log)

    names = {
        name
        for kind, found in made.items()
        if kind not in ("lambda version", "lambda alias")
        for name in found
    } | {f"s3://{BUCKET}", model}
    assert {f"{PROJECT}-{STAGE}", f"{PROJECT}-{STAGE}-predict", BUCKET} <= names
    assert_whole(log.read_text(encoding="utf-8"), names)


@pytest.mark.slow
def test_the_demo_log_keeps_every_name_whole(
    small_demo: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """The session's `dogclf demo --json`: its stderr (a pipe) holds every plan, applied
    step and narrated result; the summary table, which --json replaces, is drawn here by
    the demo's own renderer from that run's result, stdout a file."""
    assert small_demo.returncode == 0, small_demo.stderr[-3000:]
    summary = json.loads(small_demo.stdout)
    made: dict[str, list[str]] = summary["made"]
    names = {
        name
        for kind, found in made.items()
        if kind not in ("lambda version", "lambda alias")
        for name in found
    }
    train = next(s for s in summary["steps"] if s["step"] == "train-sagemaker")
    found = re.search(r"training job (\S+) \S+ -> (s3://\S+?)(;|$)", train["created"])
    assert found, train["created"]
    job, model_data = found.group(1), found.group(2)
    names |= {job, model_data, "s3://dogclf-demo-artifacts"}
    assert_whole(small_demo.stderr, names)

    table = tmp_path / "summary.txt"
    with table.open("w", encoding="utf-8") as out:
        subprocess.run(
            [sys.executable, "-c", SUMMARY],
            input=small_demo.stdout,
            text=True,
            stdout=out,
            env={**os.environ, "COLUMNS": "80"},
            check=True,
        )
    text = table.read_text(encoding="utf-8")
    assert re.search(r"train-sagemaker\s.*\sok\s.*training job", text)
    assert_whole(text, {job, model_data, *made["endpoint"], *made["lambda function"]})


# The demo's summary table from its --json result, as `dogclf demo` (no --json) prints it.
SUMMARY = r"""
import json, sys
from dogclf.commands.demo_cmd import _print_summary
from dogclf.local.demo import DemoResult, StepReport

doc = json.load(sys.stdin)
steps = [StepReport(s["step"], s["ok"], s["seconds"], s["created"], s["error"]) for s in doc["steps"]]
_print_summary(DemoResult(
    steps=steps, classes=doc["classes"], accuracy=doc["test_accuracy"],
    paths_agree=doc["paths_agree"], left_after_teardown=doc["left_after_teardown"],
    aws_code=doc["aws_code"],
))
"""


# ---------------------------------------------------------------- on a terminal


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def on_terminal(args: list[str], cwd: Path, **env: str) -> str:
    """`dogclf ARGS` on a pseudo-terminal of 80 x 24: what it showed (stdout and stderr)."""
    import fcntl
    import termios

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dogclf", *args],
        cwd=cwd,
        env={**base, "TERM": "xterm-256color", **env},
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal (EIO on Linux)
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait()
    os.close(main)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_no_color_and_NO_COLOR_take_the_colour_away_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "dogclf.toml").write_text(CONFIG)
    coloured = on_terminal(["config", "validate"], cwd=tmp_path)
    assert "config is valid" in coloured and COLOR.search(coloured), coloured
    for args, env in (
        (["--no-color", "config", "validate"], {}),
        (["config", "validate"], {"NO_COLOR": "1"}),
    ):
        plain = on_terminal(args, cwd=tmp_path, **env)
        assert "config is valid" in plain and not COLOR.search(plain), (args, plain)
    # --help too (Typer's own console reads NO_COLOR, which --no-color sets first).
    assert COLOR.search(on_terminal(["--help"], cwd=tmp_path))
    assert not COLOR.search(on_terminal(["--no-color", "--help"], cwd=tmp_path))
