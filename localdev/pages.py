"""What `./dev run` serves beside the API: Swagger UI, the OpenAPI document, the demo frontend.

None of this is deployed: API Gateway serves only the function. Locally, one origin
serves the API and these pages, so the demo frontend calls the API without CORS and the
Swagger UI's "Try it out" reaches the API it documents.

    GET /                 links to the pages below
    GET /openapi.json     the API document (what `./dev openapi` writes to docs/openapi.json)
    GET /docs             Swagger UI, with its assets from Powertools' package (works offline)
    GET /demo             the demo booking frontend (files in localdev/demo/)
    GET /demo/config.js   the demo's configuration: API, company, articles, Stripe.js
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_DIR = Path(__file__).resolve().parent / "demo"
STRIPE_JS_URL = "https://js.stripe.com/v3/"  # what a deployed frontend loads
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".json": "application/json", ".png": "image/png"}  # fmt: skip
_DEMO_ROUTES = {"/demo": "index.html", "/demo/": "index.html", "/demo/confirmed": "confirmed.html",
                "/demo/cancelled": "cancelled.html"}  # fmt: skip

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Stripe Checkout API: Swagger UI</title>
<link rel="stylesheet" href="/docs/swagger-ui.min.css"></head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.min.js"></script>
<script>
// Authorized with the demo company's API key (./dev run binds it), so "Try it out" works.
const ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, docExpansion: "list",
  onComplete: () => ui.preauthorizeApiKey("ApiKey", API_KEY)});
</script>
</body>
</html>
"""

_INDEX_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Stripe Checkout service (local)</title>
<link rel="stylesheet" href="/demo/demo.css"></head>
<body><main>
<h1>Stripe Checkout service, running locally</h1>
<ul>
<li><a href="/demo">/demo</a>: the demo booking frontend (pay hosted or embedded)</li>
<li><a href="/docs">/docs</a>: Swagger UI</li>
<li><a href="/openapi.json">/openapi.json</a>: the OpenAPI document</li>
<li><code>POST /payment/stripe/v1/checkout</code>: the API itself</li>
</ul>
</main></body>
</html>
"""


@dataclass(frozen=True)
class Page:
    """One answer: status, content type, body."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class DemoArticle:
    """An article of the demo company, as its booking site would list it."""

    article_type_id: int
    article_id: int
    name: str
    unit_amount: int  # minor units
    currency: str


@dataclass(frozen=True)
class DemoConfig:
    """What the demo frontend needs to know; a real frontend has the same in its own build."""

    company_id: str
    country_code: str
    articles: tuple[DemoArticle, ...]
    api_key: str = "local"
    stripe_js_url: str = STRIPE_JS_URL
    publishable_key: str = ""

    def script(self) -> str:
        """The configuration as the ES module `/demo/config.js`."""
        config: dict[str, Any] = {
            "apiBase": "",  # same origin here; a real frontend names its API stage
            "apiKey": self.api_key,
            "companyId": self.company_id,
            "countryCode": self.country_code,
            "articles": [
                {
                    "ArticleTypeId": a.article_type_id,
                    "ArticleId": a.article_id,
                    "Name": a.name,
                    "UnitAmount": a.unit_amount,
                    "Currency": a.currency,
                }
                for a in self.articles
            ],
            "stripeJsUrl": self.stripe_js_url,
            "publishableKey": self.publishable_key,
        }
        return (
            "// Served by ./dev run (localdev/pages.py): the demo company and where Stripe.js comes from.\n"
            f"export default {json.dumps(config, indent=2)};\n"
        )


class Pages:
    """The GET routes above; `get(path)` answers one, or None for the API's routes."""

    def __init__(self, openapi_document: str, demo: DemoConfig) -> None:
        assets = importlib.resources.files("aws_lambda_powertools.event_handler.openapi.swagger_ui")
        swagger = _SWAGGER_PAGE.replace("API_KEY", json.dumps(demo.api_key))
        self._routes: dict[str, Page] = {
            "/": _html(_INDEX_PAGE),
            "/openapi.json": Page(200, "application/json", openapi_document.encode()),
            "/docs": _html(swagger),
            "/docs/": _html(swagger),
            "/demo/config.js": Page(200, _TYPES[".js"], demo.script().encode()),
        }
        for name in ("swagger-ui-bundle.min.js", "swagger-ui.min.css"):
            body = (assets / name).read_bytes()
            self._routes[f"/docs/{name}"] = Page(200, _TYPES[Path(name).suffix], body)
        # The demo's files are listed once, here (nothing else under /demo is served), and
        # read on every request, so an edit shows on the next reload.
        self._files: dict[str, Path] = {
            f"/demo/{file.name}": file for file in DEMO_DIR.iterdir() if file.suffix in _TYPES
        }
        for route, name in _DEMO_ROUTES.items():
            self._files[route] = DEMO_DIR / name

    def get(self, path: str) -> Page | None:
        """The page at `path`, or None when the path is the API's."""
        file = self._files.get(path)
        if file is not None:
            return Page(200, _TYPES[file.suffix], file.read_bytes())
        return self._routes.get(path)


def _html(text: str) -> Page:
    return Page(200, _TYPES[".html"], text.encode())
