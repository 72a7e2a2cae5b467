"""The OpenAPI UI works offline: its page names no other host, and every asset it loads
is served by the app itself (real uvicorn on a socket)."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
import pytest


class _Assets(HTMLParser):
    """Every src= and href= of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
async def test_the_api_docs_page_loads_only_assets_the_app_serves(
    http_without_redis: httpx.AsyncClient, page: str
) -> None:
    response = await http_without_redis.get(page)
    assert response.status_code == 200
    assert "SwaggerUIBundle" in response.text
    parser = _Assets()
    parser.feed(response.text)
    assert len(parser.urls) >= 4, parser.urls  # css, bundle, preset, favicon
    elsewhere = [url for url in parser.urls if "//" in url]
    assert not elsewhere, f"{page} loads assets from other hosts: {elsewhere}"
    assert "https://" not in response.text
    assert "http://" not in response.text
    for url in parser.urls:
        asset = await http_without_redis.get(url)
        assert asset.status_code == 200, f"{url}: {asset.status_code}"
        assert asset.content, url


async def test_the_document_and_the_assets_are_served_as_what_they_are(
    http_without_redis: httpx.AsyncClient,
) -> None:
    document = await http_without_redis.get("/schema/openapi.json")
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.1")
    script = await http_without_redis.get("/schema/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert "max-age" in script.headers["cache-control"]
