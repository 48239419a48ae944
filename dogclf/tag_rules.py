"""AWS's tag rules, the strictest common form over every service dogclf tags.

botocore's models (SageMaker, Lambda, IAM, CloudWatch Logs; S3 Control documents the same)
give keys 1-128 and values 0-256 characters of `[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`, 50 tags per
resource (IAM, Logs, SageMaker), keys starting with `aws:` reserved in any case, and IAM
compares role tag keys case-insensitively. Python's `re` has no `\\p{..}`, so the character
class is read from Unicode general categories. Stdlib only: `config validate` and aws/ share it.
"""

from __future__ import annotations

import json
import unicodedata

MAX_KEY = 128
MAX_VALUE = 256
MAX_TAGS = 50  # per resource; tags AWS adds itself (aws:...) do not count
SYMBOLS = frozenset("_.:/=+-@")
ALLOWED_TEXT = "letters, digits, spaces and _ . : / = + - @"
# Letters (L*), separators (Z*: spaces, line and paragraph separators), numbers (N*).
CATEGORY_CLASSES = ("L", "Z", "N")
RESERVED_PREFIXES = ("aws:", "dogclf:")
# The keys dogclf adds to resources itself: they take slots of the 50 on every resource.
DOGCLF_KEYS = ("dogclf:project", "dogclf:stage", "dogclf:request")
MAX_USER_TAGS = MAX_TAGS - len(DOGCLF_KEYS)


def allowed(char: str) -> bool:
    return char in SYMBOLS or unicodedata.category(char)[0] in CATEGORY_CLASSES


def _units(text: str) -> int:
    """Length as AWS's (Java) validators count it: UTF-16 code units, never fewer than chars."""
    return len(text.encode("utf-16-le")) // 2


def _shown(char: str) -> str:
    if char.isprintable() and not unicodedata.category(char).startswith("M"):
        return f'"{char}"'
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name.lower()})" if name else "")


def bad_characters(text: str) -> list[str]:
    """Each character outside AWS's class, once, in order of appearance."""
    return list(dict.fromkeys(c for c in text if not allowed(c)))


def _character_problem(what: str, text: str) -> str | None:
    bad = bad_characters(text)
    if not bad:
        return None
    return f"{what} has {', '.join(_shown(c) for c in bad)}: AWS allows {ALLOWED_TEXT}"


def key_problem(key: str) -> str | None:
    """Why AWS (or dogclf) would refuse `key` as a tag key; None when it is fine."""
    shown = "key"  # the field path (aws.tags["..."]) already shows it
    if not 1 <= _units(key) <= MAX_KEY:
        return f"{shown} must be 1-{MAX_KEY} characters, has {_units(key)}"
    if key.lower().startswith(RESERVED_PREFIXES):
        return f"{shown} is reserved (aws: is AWS's prefix, dogclf: is dogclf's own tags)"
    return _character_problem(shown, key)


def value_problem(value: str) -> str | None:
    """Why AWS would refuse `value` as a tag value; None when it is fine."""
    shown = f"value {_quoted(value)}"
    if _units(value) > MAX_VALUE:
        return f"{shown} must be at most {MAX_VALUE} characters, has {_units(value)}"
    return _character_problem(shown, value)


def set_problem(keys: list[str], limit: int = MAX_USER_TAGS) -> str | None:
    """Problems of the tag set as a whole: the count, and keys IAM takes for the same one."""
    if len(keys) > limit:
        return (
            f"{len(keys)} tags, at most {limit} (AWS allows {MAX_TAGS} per resource and "
            f"dogclf adds {', '.join(DOGCLF_KEYS)})"
        )
    seen: dict[str, str] = {}
    for key in keys:
        other = seen.setdefault(key.casefold(), key)
        if other != key:
            return f"keys {_quoted(other)} and {_quoted(key)} differ only in case; IAM takes them as one"
    return None


def _quoted(text: str, limit: int = 40) -> str:
    """The text in double quotes, cut short so a 300-character value stays one readable line."""
    short = text if len(text) <= limit else text[: limit - 3] + "..."
    return json.dumps(short, ensure_ascii=False)  # escapes quotes, tabs and newlines
