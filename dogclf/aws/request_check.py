"""Check every request against its service model's constraints before it is sent.

botocore validates types and required members only; AWS also refuses a value that breaks a
member's `pattern`, `min`/`max` (length of a string, blob, list or map; value of a number)
or `enum`. With DOGCLF_CHECK_REQUESTS=1 (the emulator's environment sets it, so the test
suite and the demo run with it) every client AwsContext builds checks its parameters on
botocore's `before-parameter-build` event and refuses a bad one with RequestCheckError,
naming the operation, the member path, the value and the constraint: a request AWS would
refuse fails here, before anything is sent, in every test that sends it.

DOGCLF_CHECK_REQUESTS_LOG=PATH appends one line per checked request ("service operation
skipped-patterns"), so a test session can count them.

The models' patterns are Java regexes; `python_pattern` turns the parts Python's `re` lacks
(\\p{..} classes, \\z, ...) into equivalents; a pattern it cannot turn is skipped (counted).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import unicodedata
from typing import Any

import botocore.exceptions
import botocore.model

CHECK_ENV = "DOGCLF_CHECK_REQUESTS"
LOG_ENV = "DOGCLF_CHECK_REQUESTS_LOG"


class RequestCheckError(botocore.exceptions.BotoCoreError):
    """A request parameter breaks its service model's constraint (AWS would refuse it)."""

    fmt = "{operation}: {path}={value} breaks the service model's {constraint}"


def enabled() -> bool:
    return os.environ.get(CHECK_ENV, "") not in ("", "0")


def attach(client: Any) -> None:
    """Check every request `client` sends (idempotent per client)."""
    client.meta.events.register(
        "before-parameter-build", _on_parameter_build, unique_id="dogclf-request-check"
    )


def _on_parameter_build(params: Any, model: botocore.model.OperationModel, **_: Any) -> None:
    skipped = check_request(model, params)
    path = os.environ.get(LOG_ENV)
    if path:
        line = f"{model.service_model.service_name} {model.name} {skipped}\n"
        with open(
            path, "a", encoding="utf-8"
        ) as log:  # one short write: O_APPEND keeps lines whole
            log.write(line)


def check_request(model: botocore.model.OperationModel, params: Any) -> int:
    """Raise RequestCheckError on the first broken constraint; return the number of values
    whose pattern could not be turned into a Python regex (not checked)."""
    if model.input_shape is None or not isinstance(params, dict):
        return 0
    checker = _Checker(model.name)
    checker.walk(model.input_shape, params, "")
    return checker.skipped


class _Checker:
    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.skipped = 0

    def fail(self, path: str, value: Any, constraint: str) -> None:
        shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
        raise RequestCheckError(
            operation=self.operation, path=path or "(input)", value=shown, constraint=constraint
        )

    def walk(self, shape: botocore.model.Shape, value: Any, path: str) -> None:
        if isinstance(shape, botocore.model.StructureShape) and isinstance(value, dict):
            for name, member in shape.members.items():
                if name in value and value[name] is not None:
                    self.walk(member, value[name], f"{path}.{name}" if path else name)
        elif isinstance(shape, botocore.model.ListShape) and isinstance(value, list | tuple):
            self.bounds(shape, value, len(value), path, "length")
            for i, item in enumerate(value):
                self.walk(shape.member, item, f"{path}[{i}]")
        elif isinstance(shape, botocore.model.MapShape) and isinstance(value, dict):
            self.bounds(shape, value, len(value), path, "size")
            for key, item in value.items():
                self.walk(shape.key, key, f"{path} key {key!r}")
                self.walk(shape.value, item, f"{path}[{key!r}]")
        else:
            self.scalar(shape, value, path)

    def scalar(self, shape: botocore.model.Shape, value: Any, path: str) -> None:
        if shape.type_name == "string" and isinstance(value, str):
            self.bounds(shape, value, len(value), path, "length")
            enum = shape.metadata.get("enum")
            if enum and value not in enum:
                self.fail(path, value, f"enum (one of {', '.join(enum)})")
            self.pattern(shape, value, path)
        elif shape.type_name == "blob" and isinstance(value, bytes | bytearray):
            self.bounds(shape, value, len(value), path, "length in bytes")
        elif shape.type_name in ("integer", "long", "float", "double") and isinstance(
            value, int | float
        ):
            self.bounds(shape, value, value, path, "value")

    def bounds(
        self, shape: botocore.model.Shape, value: Any, measure: float, path: str, what: str
    ) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and measure < low:
            self.fail(path, value, f"min {what} {low:g} (it is {measure:g})")
        if high is not None and measure > high:
            self.fail(path, value, f"max {what} {high:g} (it is {measure:g})")

    def pattern(self, shape: botocore.model.Shape, value: str, path: str) -> None:
        pattern = shape.metadata.get("pattern")
        if not pattern:
            return
        compiled = compile_java(pattern)
        if compiled is None:
            self.skipped += 1
        elif compiled.fullmatch(value) is None:
            self.fail(path, value, f"pattern {pattern}")


# ------------------------------------------------------------------ Java regex -> Python

# Java's POSIX classes (ASCII, as Java has them without UNICODE_CHARACTER_CLASS).
_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7f",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "Graph": "\\x21-\\x7e",
    "Print": "\\x20-\\x7e",
    "Blank": " \\t",
    "Cntrl": "\\x00-\\x1f\\x7f",
    "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0b\\f\\r",
}
# A UTF-16 surrogate pair written as two \\u escapes (Java strings are UTF-16).
_SURROGATES = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)
_CLASS = re.compile(r"\\([pP])\{(?:Is)?(\w+)\}|\\([pP])([LMNPSZC])")


@functools.cache
def compile_java(pattern: str) -> re.Pattern[str] | None:
    """The model's Java pattern as a Python regex; None where it cannot be expressed."""
    try:
        return re.compile(python_pattern(pattern), re.ASCII)
    except (re.error, KeyError):
        return None


def python_pattern(pattern: str) -> str:
    """Rewrite Java-only syntax: \\p{X}/\\P{X} classes, \\z, \\h; leave the rest."""
    if "&&" in pattern or "\\Q" in pattern:  # class intersection / quoting: not translated
        raise KeyError(pattern)
    pattern = _SURROGATES.sub(_join_surrogates, pattern)
    pattern = re.sub(r"\$\{\d+(,\d*)?\}", "$", pattern)  # Java lets `$` take a quantifier
    out: list[str] = []
    i, in_class, class_start = 0, False, 0
    while i < len(pattern):
        ch = pattern[i]
        match = _CLASS.match(pattern, i) if ch == "\\" else None
        if match:
            negate = (match.group(1) or match.group(3)) == "P"
            ranges = _class_ranges(match.group(2) or match.group(4))
            if in_class and negate:
                raise KeyError(match.group(0))  # [^..] inside [..]: not expressible
            out.append(ranges if in_class else f"[{'^' if negate else ''}{ranges}]")
            i = match.end()
            continue
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append({"z": "\\Z", "h": "[ \\t\\xa0]"}.get(nxt, ch + nxt))
            i += 2
            if in_class and nxt in "wdsWDS" and pattern[i : i + 1] == "-":
                out.append("\\-")  # Java: `[\w-_]`'s dash after a class is literal
                i += 1
            continue
        if ch == "[" and not in_class:
            in_class, class_start = True, i
        elif ch == "]" and in_class and i - class_start > 1 + (pattern[class_start + 1] == "^"):
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


def _join_surrogates(match: re.Match[str]) -> str:
    high, low = int(match.group(1), 16), int(match.group(2), 16)
    return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"


def _class_ranges(name: str) -> str:
    """The inside of a character class for \\p{name}: POSIX, or a Unicode category."""
    if name in _POSIX:
        return _POSIX[name]
    aliases = {"Alphabetic": "L", "Letter": "L", "Digit": "Nd", "Punctuation": "P"}
    return _category_ranges(aliases.get(name, name))


def _category_ranges(category: str) -> str:
    """Every code point whose Unicode category starts with `category` (L, Lu, N, Z, ...),
    as class ranges."""
    if not re.fullmatch(r"[LMNPSZC][a-z]?", category):
        raise KeyError(category)
    runs = _category_runs()
    return "".join(_range(lo, hi) for cat, lo, hi in runs if cat.startswith(category))


@functools.cache
def _category_runs() -> list[tuple[str, int, int]]:
    """(category, first, last) for each run of code points of one Unicode category: one
    pass over Unicode per process, only when a pattern needs a category."""
    runs: list[tuple[str, int, int]] = []
    current, start = unicodedata.category("\0"), 0
    for code in range(1, sys.maxunicode + 1):
        cat = unicodedata.category(chr(code))
        if cat != current:
            runs.append((current, start, code - 1))
            current, start = cat, code
    runs.append((current, start, sys.maxunicode))
    return runs


def _range(low: int, high: int) -> str:
    return f"\\U{low:08x}" if low == high else f"\\U{low:08x}-\\U{high:08x}"
