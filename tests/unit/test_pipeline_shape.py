"""The domain (the pipeline, its stages and their values) speaks no AWS: adapters translate at the boundary.
Each stage stays small enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import imshop_push

PACKAGE = Path(imshop_push.__file__).parent
DOMAIN = [
    PACKAGE / name for name in ("pipeline.py", "batch.py", "fate.py", "ports.py", "model.py", "dispatcher.py")
] + sorted((PACKAGE / "stages").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.name)
def test_the_domain_imports_no_aws_library(path: Path) -> None:
    aws = {m for m in imported_modules(path) if m.split(".")[0] in {"boto3", "botocore", "mypy_boto3_dynamodb"}}
    assert not aws, f"{path.name} imports {aws}"


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.name)
def test_every_stage_is_a_small_module_of_small_functions(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= 250, path.name
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            assert node.end_lineno is not None
            assert node.end_lineno - node.lineno < 60, f"{path.name}: {node.name}"
