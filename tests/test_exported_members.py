"""Each package's `__all__` names exactly what it makes public (httpx's check)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["runtime", "generator"])
def test_all_matches_the_public_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    for name in exported:
        assert getattr(module, name, None) is not None, (
            f"{package}.{name} is in __all__ but missing"
        )
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(f"{package}.")
    }
    assert public <= exported, f"public but not in __all__: {sorted(public - exported)}"
    assert sorted(module.__all__) == list(module.__all__), "keep __all__ sorted"
