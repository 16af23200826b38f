"""Every failure answers in JSON, and says what the client can do about it.

- The database unreachable, or no pooled connection free within the pool
  timeout: 503 with Retry-After. Told apart by where the error came from
  (SQLAlchemy, or the driver beneath it), never by its text. The next request tries again, so the app
  serves as soon as the database is back, without a restart.
- Anything else unhandled: 500 with the request's id, and nothing of the
  internals; the same id is in the log line with the error's type and
  traceback.
- A method the path does not have: 405 with every method it has in Allow.
"""

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5


class ErrorReply(BaseModel):
    detail: str
    request_id: str | None = None


# What any route that reads a body or the database may answer besides its own.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorReply, "description": "The body is not JSON"},
    503: {
        "model": ErrorReply,
        "description": "Database unavailable; retry after Retry-After seconds",
    },
}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OSError, socket_error)
    app.add_exception_handler(PoolTimeoutError, database_unavailable)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(405, method_not_allowed)
    app.add_exception_handler(Exception, unexpected_error)


async def database_unavailable(
    request: Request,
    error: Exception,
) -> JSONResponse:
    reason = type(error).__name__
    logger.warning(
        "database unavailable: %s %s: %s",
        request.method,
        request.url.path,
        reason,
        extra={"error_type": reason},
    )
    return JSONResponse(
        status_code=503,
        content={"detail": "Database unavailable; try again shortly"},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def socket_error(request: Request, error: Exception) -> JSONResponse:
    """asyncpg raises the socket's own OSError when it cannot connect, and
    SQLAlchemy passes it on unwrapped: that is the database's unavailability.
    Any other OSError (a missing file, a failed outbound call) is a bug."""
    if _raised_within_sqlalchemy(error):
        return await database_unavailable(request, error)
    return await unexpected_error(request, error)


def _raised_within_sqlalchemy(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None:
        module = frame.tb_frame.f_globals.get("__name__", "")
        if module.startswith("sqlalchemy."):
            return True
        frame = frame.tb_next
    return False


async def database_error(request: Request, error: Exception) -> JSONResponse:
    """A lost connection is the database's unavailability; the rest is a bug."""
    assert isinstance(error, DBAPIError)
    lost = (OperationalError, InterfaceError)
    if error.connection_invalidated or isinstance(error, lost):
        return await database_unavailable(request, error)
    return await unexpected_error(request, error)


async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # The id api/request_log.py gave the request (this handler runs outside
    # it, and so outside its log context); a new one for a request it never
    # saw.
    request_id = getattr(request.state, "request_id", None)
    request_id = request_id or uuid.uuid4().hex
    logger.error(
        "request %s failed: %s %s: %s",
        request_id,
        request.method,
        request.url.path,
        type(error).__name__,
        exc_info=error,
        extra={"request_id": request_id, "error_type": type(error).__name__},
    )
    return JSONResponse(
        status_code=500,
        content={"detail": "Internal Server Error", "request_id": request_id},
        headers={"X-Request-ID": request_id},
    )


async def method_not_allowed(
    request: Request,
    error: Exception,
) -> JSONResponse:
    """Starlette's 405 names only the first route of the path; Allow lists all."""
    methods = documented_methods(request.app, request.url.path)
    detail = "Method Not Allowed"
    if isinstance(error, HTTPException):
        detail = error.detail
    return JSONResponse(
        status_code=405,
        content={"detail": detail},
        headers={"Allow": ", ".join(sorted(methods))},
    )


def documented_methods(app: FastAPI, path: str) -> set[str]:
    """The methods the OpenAPI document gives this path (HEAD with GET)."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        pattern, _, _ = compile_path(template)
        if pattern.match(path):
            methods.update(method.upper() for method in operations)
    if "GET" in methods:
        methods.add("HEAD")
    return methods
