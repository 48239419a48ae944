"""CLI wiring (CliRunner) and the real console script (subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dogclf.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "init" in result.output and "config" in result.output


def test_init_then_validate(workdir: Path) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert (workdir / "dogclf.toml").is_file()
    result = runner.invoke(app, ["config", "validate"])
    assert result.exit_code == 0, result.output


def test_init_refuses_to_overwrite(workdir: Path) -> None:
    (workdir / "dogclf.toml").write_text("# mine\n")
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 1
    assert "already exists" in result.output and "--force" in result.output
    assert (workdir / "dogclf.toml").read_text() == "# mine\n"  # nothing lost
    assert runner.invoke(app, ["init", "--force"]).exit_code == 0


def test_reserved_below_provisioned_is_one_line_naming_both(workdir: Path) -> None:
    (workdir / "dogclf.toml").write_text(
        "[lambda]\nreserved_concurrency = 3\nprovisioned_concurrency = 5\n"
    )
    result = runner.invoke(app, ["config", "validate"])
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1
    assert "lambda.provisioned_concurrency" in error_lines[0]
    assert "lambda.reserved_concurrency" in error_lines[0]
    assert "Traceback" not in result.output


def test_config_show_json_has_values_and_names(workdir: Path) -> None:
    import json

    result = runner.invoke(app, ["config", "show", "--json"], env={"DOGCLF_STAGE": "prod"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stage"] == "prod"
    assert data["names"]["endpoint"] == "dogclf-prod"
    assert data["lambda"]["alias"] == "live"


def test_global_config_option(workdir: Path) -> None:
    other = workdir / "other.toml"
    other.write_text('stage = "qa"\n')
    result = runner.invoke(app, ["--config", str(other), "config", "show", "--json"])
    assert result.exit_code == 0
    assert '"stage": "qa"' in result.stdout
    missing = runner.invoke(app, ["--config", "nope.toml", "config", "validate"])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_usage_error_exits_2() -> None:
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_debug_shows_traceback(workdir: Path) -> None:
    (workdir / "dogclf.toml").write_text("[training]\nlr = 0\n")
    plain = runner.invoke(app, ["config", "validate"])
    assert "Traceback" not in plain.output
    debug = runner.invoke(app, ["--debug", "config", "validate"])
    assert debug.exit_code == 1 and "Traceback" in debug.output


def test_console_script_version_and_light_import(workdir: Path) -> None:
    out = subprocess.run(["dogclf", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("dogclf ")
    probe = (
        "import sys, dogclf.cli; heavy = [m for m in ('torch', 'boto3', 'botocore', "
        "'sagemaker', 'torchvision') if m in sys.modules]; print(heavy)"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "[]"


def test_an_error_quoting_markup_shows_it_as_typed(workdir: Path) -> None:
    # The refused value is "[red]": rich would swallow it as a style were it read as markup.
    (workdir / "dogclf.toml").write_text('[aws.tags]\nteam = "[red]"\n')
    result = runner.invoke(app, ["config", "validate"])
    assert result.exit_code != 0
    assert 'value "[red]"' in result.output


def test_a_reader_that_goes_away_ends_the_command_quietly(workdir: Path) -> None:
    # `dogclf config show | head -1`: the pipe's read end is gone before dogclf writes.
    import os

    subprocess.run([sys.executable, "-m", "dogclf", "init"], cwd=workdir, check=True)
    for args in (("config", "show"), ("demo", "--help")):
        read_end, write_end = os.pipe()
        os.close(read_end)
        done = subprocess.run(
            [sys.executable, "-m", "dogclf", *args],
            cwd=workdir,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(write_end)
        assert (done.returncode, done.stderr) == (1, ""), args
