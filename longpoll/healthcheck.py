"""`long-poll healthcheck`: the HEALTHCHECK of an image that has no curl.

It asks the local server's /healthz and exits 0 on a 200, 1 otherwise, within 2 seconds. It
uses only the standard library's http.client, so that it starts without importing aiohttp.
"""

from __future__ import annotations

import http.client
import sys
from typing import TextIO

DEADLINE = 2.0


def check(port: int, host: str = "127.0.0.1", err: TextIO = sys.stderr) -> int:
    connection = http.client.HTTPConnection(host, port, timeout=DEADLINE / 2)
    try:
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"long-poll healthcheck: http://{host}:{port}/healthz: {exc or type(exc).__name__}", file=err)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"long-poll healthcheck: http://{host}:{port}/healthz answered {status}", file=err)
        return 1
    return 0
