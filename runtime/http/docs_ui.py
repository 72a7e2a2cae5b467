"""The OpenAPI UI served with its own assets: Swagger UI at /schema, no CDN.

Litestar's render plugins load their JavaScript, CSS and favicon from a CDN, so the UI is a
blank page on a machine without internet. The swagger-ui-bundle-v2 wheel ships Swagger UI's
dist files; they are served from ASSETS_PATH and the page points there.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

__all__ = ["ASSETS_PATH", "docs_assets_router", "docs_render_plugins"]

ASSETS_PATH = "/schema/assets"
# The bundle's files only change with the package: a day in the browser's cache.
_CACHE = CacheControlHeader(max_age=86_400, public=True)


def docs_render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at /schema and /schema/swagger on local assets; the document at
    /schema/openapi.json (and .yaml). Redoc, RapiDoc and Elements are left out: Litestar
    loads them from a CDN only."""
    return [
        SwaggerRenderPlugin(
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
            path=["/", "/swagger"],
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


def docs_assets_router() -> Router:
    """Swagger UI's dist folder at ASSETS_PATH, outside the API-key guard (a browser loads
    these without the key) and outside the OpenAPI document."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[Path(str(swagger_ui_path))],
        name="docs-assets",
        cache_control=_CACHE,
        include_in_schema=False,
    )
