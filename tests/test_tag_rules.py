"""Tags (issue 12, item 8): keys and values are checked as AWS checks them, before anything is
created, and the message names the field. The rule is read against botocore's own models."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import botocore
import pytest
from typer.testing import CliRunner

from dogclf import tag_rules
from dogclf.cli import app
from dogclf.config import DogclfConfig, load_config
from dogclf.errors import ConfigError

runner = CliRunner()
BOTOCORE_DATA = Path(botocore.__file__).parent / "data"
# (service, shape of the key, shape of the value): every service dogclf tags whose model
# states the rule (S3's and Application Auto Scaling's models give no pattern; S3 Control's
# Tag documents the same class, and Auto Scaling's lengths are the same).
MODELLED = [
    ("sagemaker", "TagKey", "TagValue"),
    ("lambda", "TagKey", "TagValue"),
    ("iam", "tagKeyType", "tagValueType"),
    ("logs", "TagKey", "TagValue"),
    ("application-autoscaling", "TagKey", "TagValue"),
]
RULE_CLASS = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]"


def shapes(service: str) -> dict[str, dict[str, object]]:
    (model,) = sorted((BOTOCORE_DATA / service).glob("*/service-2.json*"))[-1:]
    opener = gzip.open if model.suffix == ".gz" else open
    with opener(model, "rt", encoding="utf-8") as handle:
        return json.load(handle)["shapes"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("service", "key_shape", "value_shape"), MODELLED)
def test_rule_is_the_strictest_of_the_services_models(
    service: str, key_shape: str, value_shape: str
) -> None:
    found = shapes(service)
    key, value = found[key_shape], found[value_shape]
    assert (key["min"], key["max"]) == (1, tag_rules.MAX_KEY)
    assert value.get("min", 0) == 0 and value["max"] == tag_rules.MAX_VALUE
    for shape in (key, value):
        if "pattern" in shape:
            assert RULE_CLASS in str(shape["pattern"]), (service, shape["pattern"])


def test_tag_list_limit_is_the_services_limit() -> None:
    assert shapes("sagemaker")["TagList"]["max"] == tag_rules.MAX_TAGS
    assert shapes("iam")["tagListType"]["max"] == tag_rules.MAX_TAGS
    assert shapes("logs")["Tags"]["max"] == tag_rules.MAX_TAGS


def test_character_class_matches_the_unicode_categories() -> None:
    # \p{L} letters, \p{Z} separators, \p{N} numbers (any script), plus the seven symbols.
    for char in "aZé东ж٣Ⅻ² \u3000\u2028_.:/=+-@":
        assert tag_rules.allowed(char), hex(ord(char))
    for char in "&#%!?*,;'\"\t\n\u0301😀$":
        assert not tag_rules.allowed(char), hex(ord(char))


def test_config_validate_refuses_an_ampersand_in_one_line(workdir: Path) -> None:
    (workdir / "dogclf.toml").write_text('[aws.tags]\ncost-center = "R&D #42"\n')
    result = runner.invoke(app, ["config", "validate"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if not line.startswith("Hint:")]
    assert lines == [
        'Error: dogclf.toml: aws.tags["cost-center"]: value "R&D #42" has "&", "#": '
        "AWS allows letters, digits, spaces and _ . : / = + - @"
    ]
    assert "Traceback" not in result.output


def tags(value: dict[str, str]) -> DogclfConfig:
    return load_config(environ={"DOGCLF_AWS__TAGS": json.dumps(value)})


def refusal(value: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        tags(value)
    return info.value.message


def test_unicode_letters_digits_and_spaces_are_accepted(workdir: Path) -> None:
    accepted = {"owner": "Zoë Ångström", "チーム": "東京 ١٢٣", "cost/center": "a:b=c+d-e@f_g."}
    assert tags(accepted).aws.tags == accepted
    assert tags({"empty": ""}).aws.tags == {"empty": ""}  # values may be empty


def test_value_lengths_256_and_257(workdir: Path) -> None:
    assert tags({"k": "v" * 256}).aws.tags["k"] == "v" * 256
    message = refusal({"k": "v" * 257})
    assert 'aws.tags["k"]' in message and "at most 256" in message and "257" in message


def test_key_lengths_128_and_129(workdir: Path) -> None:
    assert tags({"k" * 128: "v"})
    assert "1-128 characters, has 129" in refusal({"k" * 129: "v"})
    assert "1-128 characters, has 0" in refusal({"": "v"})


def test_length_counts_as_aws_does_in_utf16_units(workdir: Path) -> None:
    # U+20000 is a letter (Lo) outside the BMP: two UTF-16 units in AWS's (Java) validator.
    assert "has 258" in refusal({"k": "\U00020000" * 129})
    assert tags({"k": "\U00020000" * 128})


@pytest.mark.parametrize("key", ["aws:owner", "AWS:owner", "Aws:x", "dogclf:stage"])
def test_reserved_prefixes_are_refused(workdir: Path, key: str) -> None:
    message = refusal({key: "x"})
    assert f'aws.tags["{key}"]' in message and "reserved" in message


def test_keys_iam_would_merge_are_refused(workdir: Path) -> None:
    assert "differ only in case" in refusal({"Team": "a", "team": "b"})


def test_count_leaves_room_for_dogclfs_own_tags(workdir: Path) -> None:
    most = {f"k{i}": "v" for i in range(tag_rules.MAX_USER_TAGS)}
    assert len(tags(most).tags) == tag_rules.MAX_USER_TAGS + 2  # + project and stage
    message = refusal({**most, "one-more": "v"})
    assert f"at most {tag_rules.MAX_USER_TAGS}" in message and "dogclf:request" in message


def test_invisible_characters_are_named(workdir: Path) -> None:
    message = refusal({"k": "e\u0301\n"})
    assert "U+0301 (combining acute accent)" in message and "U+000A" in message
    assert "\n" not in message.split("(fix")[0].strip()  # one line even so


def test_the_tags_dogclf_adds_pass_the_rule() -> None:
    # What every resource gets (project/stage) and what training jobs add (the request digest).
    from dogclf.aws.training_jobs import REQUEST_TAG, request_digest

    cfg = DogclfConfig(project="a" * 32, stage="b" * 32)
    added = {**cfg.tags, REQUEST_TAG: request_digest({"x": 1})}
    assert set(added) == set(tag_rules.DOGCLF_KEYS)
    for key, value in added.items():
        assert re.fullmatch(r"[a-z0-9:-]+", key)
        assert tag_rules.bad_characters(key) == tag_rules.bad_characters(value) == []
        assert len(key) <= tag_rules.MAX_KEY and len(value) <= tag_rules.MAX_VALUE
