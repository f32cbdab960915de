"""The command line: `long-poll [serve]`, `long-poll client`, `long-poll healthcheck`.

Bad flags or variables print one line and exit 2. SIGTERM and SIGINT stop the service
cleanly (held polls are answered with 304, exit 0); a second one during shutdown exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
from typing import Mapping, Sequence

from longpoll.settings import PROG, Settings, SettingsError, parse_settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ)
    except SettingsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if settings.command == "healthcheck":
        from longpoll.healthcheck import check

        return check(settings.port)

    from longpoll.logsetup import configure_logging

    logger = configure_logging(settings.log_format)
    run = serve if settings.command == "serve" else client_only
    try:
        return asyncio.run(run(settings, logger))
    except KeyboardInterrupt:  # a signal before our handlers were installed
        return 128 + signal.SIGINT


def _stop_event(logger: logging.Logger) -> asyncio.Event:
    """An event set by the first SIGTERM/SIGINT; the second one ends the process at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.warning("second signal, exiting now", extra={"fields": {"signal": name}})
            os._exit(128 + signum)
        logger.info("stopping", extra={"fields": {"signal": name}})
        stop.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


def _backoff(settings: Settings):
    from longpoll.client import Backoff

    return Backoff(settings.backoff_initial, settings.backoff_max, random.Random(settings.seed))


async def serve(settings: Settings, logger: logging.Logger) -> int:
    from longpoll.client import run_client
    from longpoll.server import create_app, raise_open_file_limit, start_server

    stop = _stop_event(logger)
    soft, hard = raise_open_file_limit()
    app = create_app(settings, logger.getChild("server"))
    try:
        runner, port = await start_server(app)
    except OSError as exc:
        logger.error("cannot listen", extra={"fields": {"host": settings.host, "port": settings.port, "error": exc.strerror or exc}})
        return 1
    logger.info(
        "listening",
        extra={"fields": {"url": f"http://{settings.host}:{port}/", "open_files": soft, "version": _version()}},
    )
    client = None
    if settings.enable_client:
        url = f"http://127.0.0.1:{port}/"
        client = asyncio.create_task(
            run_client(url, timeout=settings.client_timeout, backoff=_backoff(settings), logger=logger.getChild("client"))
        )
    await stop.wait()
    if client is not None:
        client.cancel()
        await asyncio.gather(client, return_exceptions=True)
    await runner.cleanup()
    logger.info("stopped")
    return 0


async def client_only(settings: Settings, logger: logging.Logger) -> int:
    from longpoll.client import run_client

    stop = _stop_event(logger)
    client = asyncio.create_task(
        run_client(
            settings.url, timeout=settings.client_timeout, backoff=_backoff(settings), logger=logger.getChild("client")
        )
    )
    await stop.wait()
    client.cancel()
    await asyncio.gather(client, return_exceptions=True)
    logger.info("stopped")
    return 0


def _version() -> str:
    from longpoll import __version__

    return __version__
