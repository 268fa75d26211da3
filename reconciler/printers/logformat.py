"""How the loop's log lines read: text (the default) or one JSON object per line.

`reconciler sync` and `reconciler controller` take `--log-format text|json` and call `configure`
once. A JSON line holds `time` (RFC 3339, UTC, milliseconds), `level` (lower case, as
Kubernetes controllers' JSON logs have it), `logger` and `message`, then the structured fields
the log record carries (`extra={FIELDS: {...}}`: `events.logged` hands each engine event's
own, as `events.as_json` words them) and, when there is one, the traceback as `exception`.
Warnings are logged too, so that nothing else reaches stderr in another format.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

FORMATS = ("text", "json")
# The attribute of a LogRecord holding its structured fields (`extra={FIELDS: {...}}`).
FIELDS = "fields"
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the standard keys win over a field of the same name."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, object] = {
            "time": when.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None) or {}
        line.update({key: value for key, value in fields.items() if key not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure(form: str, level: int) -> None:
    """The process's log: to stderr, in `form` (one of FORMATS), from `level` up (a logging
    set up already, as under pytest, is left as it is)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)
