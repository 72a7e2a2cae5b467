"""The dashboard at /ui (see runtime.ui.app): pages for people, beside the JSON API."""

from runtime.ui.app import UI_PATH, build_dashboard

__all__ = ["UI_PATH", "build_dashboard"]
