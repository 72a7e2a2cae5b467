"""`notifications.__all__` is exactly the package's public names (httpx's check)."""

from __future__ import annotations

import notifications


def test_all_lists_every_public_member() -> None:
    public = {
        name
        for name, value in vars(notifications).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("notifications")
        and callable(value)
    }

    assert set(notifications.__all__) == public
    assert sorted(notifications.__all__) == notifications.__all__
