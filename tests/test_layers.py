"""Imports flow one way (docs/architecture.md, Layers): every module under dogclf/ is read with
`ast`, each import (lazy ones inside functions and TYPE_CHECKING blocks included) is mapped to
a layer, and any edge the table does not allow fails, naming the file and line."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dogclf"

CORE = {"dogclf", "dogclf.config", "dogclf.config_doc", "dogclf.errors", "dogclf.plan"}
CORE |= {"dogclf.render", "dogclf.tag_rules", "dogclf.role_policy", "dogclf.units"}

# layer -> the layers it may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "cli": {"commands", "core"},
    "commands": {"predict", "local", "aws", "training", "serving", "model", "core"},
    "predict": {"serving", "aws", "model", "core"},
    "local": {"aws", "training", "serving", "model", "core"},
    "aws": {"model", "core"},
    "training": {"model", "core"},
    "serving": {"model", "core"},
    "model": {"core"},
    "core": set(),
    "lambda_handler": set(),  # stdlib + the Lambda runtime's boto3; nothing of dogclf
}
# Module-level exceptions, each with its reason. model/archs.py is a leaf (stdlib only), so
# config.py validating `training.arch` with it makes no cycle and keeps one list.
EXTRA_EDGES = {("dogclf.config", "dogclf.model.archs")}

# Third-party packages a layer must not import, whatever the layer table says.
FORBIDDEN_PACKAGES: dict[str, set[str]] = {
    "cli": {"torch", "boto3", "botocore", "sagemaker", "moto"},
    "commands": {"boto3", "botocore", "moto"},
    "aws": {"rich", "typer", "torch", "moto"},
    "training": {"boto3", "botocore", "typer", "rich", "sagemaker", "moto"},
    "serving": {"boto3", "botocore", "typer", "rich", "moto"},
    "model": {"boto3", "botocore", "typer", "rich", "sagemaker", "moto"},
    "core": {"torch", "boto3", "botocore", "sagemaker", "moto"},
    "lambda_handler": {"torch", "rich", "typer", "pydantic", "moto"},
}
# Modules a layer must not import although the table allows their layer.
FORBIDDEN_MODULES: dict[str, set[str]] = {"aws": {"dogclf.render"}}
# Core modules that must stay free of rich, so aws/ (which uses plan.py) never loads it.
RICH_FREE = {"dogclf.plan", "dogclf.errors", "dogclf.config", "dogclf.tag_rules"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in CORE:
        return "core"
    if module in ("dogclf.cli", "dogclf.__main__"):
        return "cli"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    raise AssertionError(f"{module} belongs to no layer: add it to the table in {__file__}")


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@dataclass(frozen=True)
class Edge:
    source: str
    target: str  # a dogclf module, or a top-level third-party package
    line: int


def imports_of(path: Path) -> list[Edge]:
    source = module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    edges: list[Edge] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            edges += [Edge(source, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from dogclf.model import network`: the submodule
                sub = f"{target}.{alias.name}"
                edges.append(Edge(source, sub if _is_module(sub) else target, node.lineno))
    return edges


def all_edges() -> list[Edge]:
    return [edge for path in sorted(PACKAGE.rglob("*.py")) for edge in imports_of(path)]


def violations(edges: list[Edge]) -> list[str]:
    found = []
    for edge in edges:
        layer = layer_of(edge.source)
        where = f"{edge.source}:{edge.line} imports {edge.target}"
        if not edge.target.startswith("dogclf"):
            top = edge.target.split(".")[0]
            if top in FORBIDDEN_PACKAGES.get(layer, set()):
                found.append(f"{where}: {layer}/ must not import {top}")
            if top == "rich" and edge.source in RICH_FREE:
                found.append(f"{where}: {edge.source} must stay free of rich")
            continue
        target_module = edge.target
        while not _is_module(target_module):  # `import dogclf.aws.s3.thing` style
            target_module = target_module.rpartition(".")[0]
        target = layer_of(target_module)
        if (edge.source, target_module) in EXTRA_EDGES:
            continue
        if target_module in FORBIDDEN_MODULES.get(layer, set()):
            found.append(f"{where}: {layer}/ must not import {target_module}")
        elif target != layer and target not in ALLOWED[layer]:
            found.append(f"{where}: {layer} -> {target} is not an allowed edge")
    return found


def test_every_module_maps_to_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_imports_flow_one_way() -> None:
    problems = violations(all_edges())
    assert not problems, "layer violations:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "code", "expected"),
    [
        ("dogclf/training/x.py", "from dogclf.serving import batching", "training -> serving"),
        ("dogclf/serving/x.py", "def f():\n    import dogclf.aws.session", "serving -> aws"),
        ("dogclf/aws/x.py", "from dogclf import render", "must not import dogclf.render"),
        ("dogclf/aws/x.py", "from rich.table import Table", "must not import rich"),
        ("dogclf/commands/x.py", "import boto3", "must not import boto3"),
        ("dogclf/local/x.py", "from dogclf.cli import app", "local -> cli"),
        ("dogclf/model/x.py", "from dogclf.training import data", "model -> training"),
        ("dogclf/lambda_handler/x.py", "from dogclf.errors import X", "lambda_handler -> core"),
        ("dogclf/plan.py", "from dogclf.aws import session", "core -> aws"),
    ],
)
def test_the_checker_catches_a_bad_edge(
    tmp_path: Path, source: str, code: str, expected: str
) -> None:
    # The checker itself, on a planted module: a walk that found nothing must mean something.
    root = tmp_path / "dogclf"
    for real in PACKAGE.rglob("*.py"):  # the real tree's module names, empty files
        target = root / real.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    planted = tmp_path / source
    planted.write_text(code + "\n")
    globals()["PACKAGE"] = root  # the helpers read the module-level root
    try:
        problems = violations(imports_of(planted))
    finally:
        globals()["PACKAGE"] = Path(__file__).resolve().parents[1] / "dogclf"
    assert any(expected in p for p in problems), problems
