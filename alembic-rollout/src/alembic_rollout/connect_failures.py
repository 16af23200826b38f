"""Why a connection to PostgreSQL failed, in one line without credentials:
for `alembic`, the tools, and a service's readiness probe."""

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine


def describe_connect_failure(engine: AsyncEngine, error: Exception) -> str:
    """Where it tried (host and port, or socket; database), the driver's
    reason, and the TLS that was asked for."""
    url = engine.url
    port = url.port or 5432
    if url.host:
        where = f"{url.host}:{port}"
    elif url.query.get("host"):
        # ?host=/a/directory names a Unix socket, not a host: no port after it.
        where = f"the socket in {url.query['host']} (port {port})"
    else:
        where = f"localhost:{port}"
    cause = error.orig if isinstance(error, DBAPIError) else error
    reason = " ".join(str(cause).split())[:300]
    where += f" (database {url.database!r})"
    if url.query.get("sslmode"):
        # What TLS was asked for, from the URL or the DB_SSL* settings: a
        # driver's message often names neither (a missing certificate file).
        tls = []
        for name in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
            if name in url.query:
                tls.append(f"{name}={url.query[name]}")
        reason = f"{reason.rstrip('.')}. TLS: {', '.join(tls)}"
    return f"Cannot connect to PostgreSQL at {where}: {reason}"
