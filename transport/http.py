"""HTTP edge (Litestar on uvicorn): the app factory over the reference's routes and JSON shapes.

The routes live in ``transport.routes`` (one module per resource) and share ``transport.edge``; this module
wires them into one app. ``Edge`` and ``RebalanceFlags`` are re-exported for the daemon and the tests.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from config import Auth
from transport.auth import Authenticator, authorize
from transport.edge import Edge, header_etag
from transport.errors import client_error_handler
from transport.routes import ROUTE_HANDLERS, RebalanceFlags

__all__ = ["Edge", "RebalanceFlags", "create_app", "header_etag"]


def create_app(edge: Edge, auth: Auth | None = None, rebalance: RebalanceFlags | None = None) -> Litestar:
    """``auth`` with a JWT block or service tokens turns authentication and roles on (see transport/auth)."""
    enabled = auth is not None and auth.enabled
    app = Litestar(
        # With auth off the guard would only return at once, but Litestar still awaits it per request.
        guards=[authorize] if enabled else [],
        # A 1,000-world rebalancing plan (100k position slices) is about 9 MB of JSON; the default is 10 MB.
        request_max_body_size=64 * 1024 * 1024,
        route_handlers=ROUTE_HANDLERS,
        exception_handlers={HTTPException: client_error_handler},
        openapi_config=OpenAPIConfig(title="WorldService", version="1.0.0", path="/schema"),
        logging_config=None,  # the daemon owns logging (JSON lines); Litestar must not install handlers
        debug=False,
    )
    app.state.edge = edge
    app.state.rebalance_flags = rebalance or RebalanceFlags()
    app.state.authenticator = Authenticator(auth) if enabled else None
    app.state.auth_header = auth.header if auth is not None else "Authorization"
    return app
