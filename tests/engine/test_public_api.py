"""The public API: ``repid_django.__all__`` is explicit, sorted and complete."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import repid_django
import repid_django.engine


def _literal_all(module: object) -> list[str]:
    source = Path(inspect.getfile(module)).read_text()  # type: ignore[arg-type]
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return value
    raise AssertionError(f"{module} has no literal __all__")


def test_all_is_an_explicit_sorted_literal() -> None:
    for module in (repid_django, repid_django.engine):
        names = _literal_all(module)
        assert names == module.__all__
        assert names == sorted(names), f"{module.__name__}.__all__ is not sorted"
        assert len(set(names)) == len(names)


def test_every_name_is_importable() -> None:
    module = importlib.import_module("repid_django")
    for name in repid_django.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from repid_django import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(repid_django.__all__)


def test_nothing_public_is_left_out() -> None:
    public = {
        name
        for name, value in vars(repid_django).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= set(repid_django.__all__)
    assert set(repid_django.engine.__all__) <= set(repid_django.__all__)


def test_seed_names_are_exported() -> None:
    seed_names = {
        "Connection",
        "InMemoryMessageBroker",
        "Job",
        "PrioritiesT",
        "Queue",
        "Repid",
        "Router",
        "Worker",
        "default_retry_policy_factory",
    }
    assert seed_names <= set(repid_django.__all__)


def test_importing_the_engine_does_not_import_django() -> None:
    import subprocess
    import sys

    code = "import sys, repid_django; assert 'django' not in sys.modules, 'django imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
