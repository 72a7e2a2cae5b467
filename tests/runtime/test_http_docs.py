"""`/docs`, where FastAPI users look for the API docs, leads to the OpenAPI UI."""

from __future__ import annotations

from runtime.testing import running_app


async def test_docs_redirects_to_the_api_docs(redis_url: str) -> None:
    async with running_app(redis_url=redis_url, enable_workers=False) as app:
        assert app.http is not None
        response = await app.http.get("/docs", follow_redirects=False)
        assert response.status_code in (301, 302, 307, 308), response.text
        assert response.headers["location"] == "/schema"
        ui = await app.http.get("/docs", follow_redirects=True)
        assert ui.status_code == 200
        assert "text/html" in ui.headers["content-type"]
