"""Log lines: timestamped, one per line, text or JSON."""

import io
import json
import re

from longpoll.logsetup import configure_logging


def test_text_line_has_timestamp_level_and_fields():
    stream = io.StringIO()
    configure_logging("text", stream).getChild("server").info("request", extra={"fields": {"status": 200}})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO server: request status=200\n", stream.getvalue())


def test_json_line_is_one_object():
    stream = io.StringIO()
    configure_logging("json", stream).warning("careful", extra={"fields": {"attempt": 2}})
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "careful" and entry["attempt"] == 2 and entry["level"] == "WARNING"


def test_errors_are_one_line_without_traceback():
    stream = io.StringIO()
    logger = configure_logging("text", stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    assert stream.getvalue().count("\n") == 1 and "error='boom'" in stream.getvalue()
