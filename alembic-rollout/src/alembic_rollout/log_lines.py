"""A service's log lines: text for people, or one JSON object per line for
a log stack, the same for every standard-library logger (the app's,
uvicorn's, Alembic's, this library's).

python-json-logger formats the standard library's records, so that no line
needs a second logging API; what a call passes as `extra` (a revision, a
duration) becomes a field of its own. Each line written while a request is
served carries that request's id, from `request_id`.
"""

import logging
from contextvars import ContextVar
from logging.config import fileConfig
from typing import Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
# The request being served, set by the service's request middleware.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
TEXT_FORMAT = "%(levelname)-5.5s [%(name)s] %(message)s%(request_suffix)s"
# Record attributes that are no field of a JSON line: the standard ones,
# uvicorn's copy of the message with terminal colours, and the text lines'
# copy of the request id.
NOT_FIELDS = [*RESERVED_ATTRS, "color_message", "request_suffix"]
# uvicorn's own loggers, which it gives handlers of their own.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
HANDLER_NAME = "alembic_rollout.log_lines"


class RequestIdFilter(logging.Filter):
    """Adds the id of the request being served, if any, to each record: a
    field of JSON lines, and `(request <id>)` at the end of text lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        if hasattr(record, "request_id"):
            record.request_suffix = f" (request {record.request_id})"
        return True


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            reserved_attrs=NOT_FIELDS,
        )
    return logging.Formatter(TEXT_FORMAT, defaults={"request_suffix": ""})


def configure_alembic_logging(alembic_ini: str, log_format: LogFormat) -> None:
    """alembic.ini's [loggers] (their levels and handler), in `log_format`."""
    fileConfig(alembic_ini, disable_existing_loggers=False)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
        if log_format == "json":
            handler.setFormatter(formatter(log_format))


def configure_app_logging(log_format: LogFormat) -> None:
    """INFO lines of every logger on one stderr handler, uvicorn's included;
    its access log gives way to the service's request lines, which say
    more. Call it as the app is imported: uvicorn has set its loggers up,
    and not yet said a word."""
    handler = logging.StreamHandler()
    handler.name = HANDLER_NAME
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    # Imported again (a test, uvicorn's reloader): one handler, not two.
    for previous in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # A readiness probe reads the database's revision through Alembic,
    # whose INFO lines ("Context impl PostgresqlImpl.") would follow each.
    logging.getLogger("alembic").setLevel(logging.WARNING)
