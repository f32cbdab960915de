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
REPEAT_WINDOW = 0.2  # seconds within which a stop signal is a forwarded copy of the first


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
    """An event set by the first SIGTERM/SIGINT; a second one ends the process at once.

    Copies of the first signal are not a second one: Ctrl-C in a terminal signals the whole
    process group, and staticx's parent (and in the fast build PyInstaller's too) forwards it
    again, so the same SIGINT arrives two or three times within milliseconds.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    first_at: list[float] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        now = loop.time()
        if first_at:
            if now - first_at[0] < REPEAT_WINDOW:
                return
            logger.warning("second signal, exiting now", extra={"fields": {"signal": name}})
            os._exit(128 + signum)
        first_at.append(now)
        logger.info("stopping", extra={"fields": {"signal": name}})
        stop.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


def _start_client(url: str, settings: Settings, logger: logging.Logger, follow: str = "") -> asyncio.Task[None]:
    from longpoll.client import Backoff, run_client

    backoff = Backoff(settings.backoff_initial, settings.backoff_max, random.Random(settings.seed))
    if follow:
        from longpoll.follow import follow as follow_channel

        return asyncio.create_task(
            follow_channel(url, follow, cursor=settings.cursor, timeout=settings.timeout, backoff=backoff,
                           logger=logger.getChild("client"))
        )
    return asyncio.create_task(
        run_client(url, timeout=settings.client_timeout, backoff=backoff, logger=logger.getChild("client"))
    )


def _ignore_stop_signals() -> None:
    """Once stopped, copies of the stop signal are ignored until the process exits.

    The parent processes forward the signal again, and a copy can arrive after
    the loop has put back Python's default SIGINT handler: a KeyboardInterrupt then, during
    interpreter exit, ends the process by SIGINT instead of status 0.
    """
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)


async def _stop_client(client: asyncio.Task[None]) -> None:
    client.cancel()
    await asyncio.gather(client, return_exceptions=True)


async def serve(settings: Settings, logger: logging.Logger) -> int:
    from longpoll.gcpolicy import tune_for_many_connections
    from longpoll.server import create_app, raise_open_file_limit, start_server

    stop = _stop_event(logger)
    open_files, _ = raise_open_file_limit()
    app = create_app(settings, logger.getChild("server"))
    try:
        runner, port = await start_server(app)
    except OSError as exc:
        fields = {"host": settings.host, "port": settings.port, "error": exc.strerror or str(exc)}
        logger.error("cannot listen", extra={"fields": fields})
        return 1
    tune_for_many_connections()
    fields = {"url": f"http://{settings.host}:{port}/", "open_files": open_files, "version": _version()}
    logger.info("listening", extra={"fields": fields})
    client = None
    if settings.enable_client:  # with --publish-demo, the client follows that channel instead of GET /
        client = _start_client(f"http://127.0.0.1:{port}/", settings, logger, follow=settings.publish_demo)
    await stop.wait()
    if client is not None:
        await _stop_client(client)
    await runner.cleanup()
    logger.info("stopped")
    _ignore_stop_signals()
    return 0


async def client_only(settings: Settings, logger: logging.Logger) -> int:
    stop = _stop_event(logger)
    client = _start_client(settings.url, settings, logger, follow=settings.follow)
    await stop.wait()
    await _stop_client(client)
    logger.info("stopped")
    _ignore_stop_signals()
    return 0


def _version() -> str:
    from longpoll import __version__

    return __version__
