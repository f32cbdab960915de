"""One validated settings object, built from command-line flags and environment variables.

Every setting has a flag and an environment variable; a flag wins over the variable, the
variable over the default. Any invalid value raises `SettingsError` with one line that names
the flag or variable, so that the command line can print it and exit with status 2.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from longpoll import __version__
from longpoll.stream import CHANNEL_NAME, CHANNEL_RULE

PROG = "long-poll"
COMMANDS = ("serve", "client", "healthcheck")
LOG_FORMATS = ("text", "json")
ACCESS_LOGS = ("all", "errors", "none")
TRUE_WORDS = ("1", "t", "true", "TRUE", "True")
FALSE_WORDS = ("0", "f", "false", "FALSE", "False")


class SettingsError(ValueError):
    """A flag or environment variable has a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to run; built only by `parse_settings`."""

    command: str = "serve"
    host: str = "0.0.0.0"
    port: int = 8000
    timeout: float = 5.0
    immediate_ratio: float = 0.5
    min_delay: float = 1.0
    max_delay: float = 10.0
    seed: int | None = None
    log_format: str = "text"
    access_log: str = "all"
    enable_client: bool = False
    url: str = "http://127.0.0.1:8000/"
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    max_held_polls: int = 20000
    max_field_size: int = 8190
    keepalive_timeout: float = 75.0
    header_timeout: float = 10.0
    retention_count: int = 1000
    retention_seconds: float = 300.0
    max_channels: int = 1000
    max_event_bytes: int = 65536
    max_poll_timeout: float = 30.0
    publish_demo: str = ""
    follow: str = ""
    cursor: int | None = None

    @property
    def client_timeout(self) -> float:
        """The client waits a little longer than the server holds a poll."""
        return self.timeout + max(1.0, self.timeout * 0.2)


# --- converters: text in, value out, ValueError with a short reason otherwise ---------------


def _integer(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise ValueError("is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return convert


def _number(low: float, high: float = math.inf, *, low_open: bool = False) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("is not a number") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if value < low or (low_open and value == low) or value > high:
            bound = f"greater than {low:g}" if low_open else f"at least {low:g}"
            if high != math.inf:
                bound = f"between {low:g} and {high:g}"
            raise ValueError(f"must be {bound}")
        return value

    return convert


def _boolean(text: str) -> bool:
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"must be one of {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}")


def _choice(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return text

    return convert


def _host(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise ValueError("must be a host name or address without spaces")
    return text


def _channel_or_empty(text: str) -> str:
    if text and not CHANNEL_NAME.fullmatch(text):
        raise ValueError(f"must be a channel name matching {CHANNEL_RULE} (or empty: off)")
    return text


def _url(text: str) -> str:
    parts = urlsplit(text)
    # http only: the frozen binary carries no TLS library (see build/long-poll.spec).
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("must be an http:// URL with a host")
    try:
        parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return text


@dataclass(frozen=True)
class Option:
    """One setting: its field, flag, environment variable, converter and help."""

    field: str
    flag: str
    env: str
    convert: Callable[[str], object]
    help: str
    commands: tuple[str, ...]
    shown: str | None = None  # the default as --help shows it, when not the value itself


SERVE, CLIENT, HEALTH = ("serve",), ("client",), ("healthcheck",)

OPTIONS = (
    Option("host", "--host", "LONGPOLL_HOST", _host, "address to listen on", SERVE),
    Option("port", "--port", "PORT", _integer(0, 65535),
           "TCP port to listen on (0: any free port) or, for healthcheck, to ask", SERVE + HEALTH),
    Option("timeout", "--timeout", "LONGPOLL_TIMEOUT", _number(0, low_open=True),
           "seconds a poll is held before 304 Not Modified; the client waits a little longer",
           SERVE + CLIENT),
    Option("immediate_ratio", "--immediate-ratio", "LONGPOLL_IMMEDIATE_RATIO", _number(0, 1),
           "share of polls answered at once, in [0, 1]", SERVE),
    Option("min_delay", "--min-delay", "LONGPOLL_MIN_DELAY", _number(0),
           "shortest delay in seconds before a held poll gets an event", SERVE),
    Option("max_delay", "--max-delay", "LONGPOLL_MAX_DELAY", _number(0),
           "longest delay in seconds (delays at or beyond --timeout give a 304)", SERVE),
    Option("seed", "--seed", "LONGPOLL_SEED", _integer(0, 2**63 - 1),
           "seed of the random generator, for repeatable runs", SERVE + CLIENT),
    Option("log_format", "--log-format", "LONGPOLL_LOG_FORMAT", _choice(*LOG_FORMATS),
           "log line format: text or json", SERVE + CLIENT),
    Option("access_log", "--access-log", "LONGPOLL_ACCESS_LOG", _choice(*ACCESS_LOGS),
           "which answers get a log line: all, errors (status 400 and above) or none", SERVE),
    Option("enable_client", "--enable-client", "ENABLE_CLIENT", _boolean,
           "also run a client in this process once the server listens (true/false)", SERVE),
    Option("url", "--url", "LONGPOLL_URL", _url, "URL the client polls", CLIENT),
    Option("backoff_initial", "--backoff-initial", "LONGPOLL_BACKOFF_INITIAL",
           _number(0, low_open=True), "first retry delay cap in seconds after an error",
           SERVE + CLIENT),
    Option("backoff_max", "--backoff-max", "LONGPOLL_BACKOFF_MAX", _number(0, low_open=True),
           "largest retry delay cap in seconds", SERVE + CLIENT),
    Option("max_held_polls", "--max-held-polls", "LONGPOLL_MAX_HELD_POLLS", _integer(1, 10**7),
           "polls held at once before new ones get 503 with Retry-After", SERVE),
    Option("max_field_size", "--max-header-size", "LONGPOLL_MAX_HEADER_SIZE",
           _integer(256, 1 << 20), "largest request line or header line in bytes (beyond: 400)",
           SERVE),
    Option("keepalive_timeout", "--keepalive-timeout", "LONGPOLL_KEEPALIVE_TIMEOUT", _number(0),
           "seconds an idle keep-alive connection is kept open", SERVE),
    Option("header_timeout", "--header-timeout", "LONGPOLL_HEADER_TIMEOUT", _number(0, low_open=True),
           "seconds a client has to send a complete request line and headers (beyond: 408, closed)",
           SERVE),
    Option("retention_count", "--retention-count", "LONGPOLL_RETENTION_COUNT", _integer(1, 10**7),
           "events kept per channel for readers that fall behind", SERVE),
    Option("retention_seconds", "--retention-seconds", "LONGPOLL_RETENTION_SECONDS",
           _number(0, low_open=True), "seconds an event is kept", SERVE),
    Option("max_channels", "--max-channels", "LONGPOLL_MAX_CHANNELS", _integer(1, 10**7),
           "channels that can exist at once (beyond: 422)", SERVE),
    Option("max_event_bytes", "--max-event-bytes", "LONGPOLL_MAX_EVENT_BYTES", _integer(2, 1 << 24),
           "largest published event body in bytes (beyond: 413)", SERVE),
    Option("max_poll_timeout", "--max-poll-timeout", "LONGPOLL_MAX_POLL_TIMEOUT", _number(0, low_open=True),
           "longest hold of GET /events, seconds (plus up to 10 %% jitter); also its default", SERVE),
    Option("publish_demo", "--publish-demo", "LONGPOLL_PUBLISH_DEMO", _channel_or_empty,
           "publish random demo events to this channel at the demo's rhythm (empty: off)", SERVE,
           shown="empty: off"),
    Option("follow", "--follow", "LONGPOLL_FOLLOW", _channel_or_empty,
           "follow this channel of GET /events and print its events as JSON lines", CLIENT,
           shown="empty: poll GET /"),
    Option("cursor", "--cursor", "LONGPOLL_CURSOR", _integer(0, 2**63 - 1),
           "with --follow: the cursor to start from (0: oldest retained)", CLIENT,
           shown="new events only"),
)

DESCRIPTIONS = {
    "serve": "Run the long-polling server (the default command). "
    "Other commands: 'client' polls a server, 'healthcheck' asks the local server's /healthz.",
    "client": "Long-poll a server in a loop, retrying with capped exponential backoff on errors.",
    "healthcheck": "Exit 0 when the server on 127.0.0.1:PORT answers /healthz within 2 s, else 1.",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line for the caller to print, not usage text and exit."""

    def error(self, message: str):  # type: ignore[override]
        raise SettingsError(message)


def _parser(command: str) -> argparse.ArgumentParser:
    prog = PROG if command == "serve" else f"{PROG} {command}"
    parser = _Parser(
        prog=prog,
        allow_abbrev=False,
        description=DESCRIPTIONS[command],
        epilog="Each flag can also be set by the environment variable shown; the flag wins.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    defaults = Settings()
    for option in OPTIONS:
        if command in option.commands:
            default = getattr(defaults, option.field)
            parser.add_argument(
                option.flag,
                dest=option.field,
                metavar=option.env,
                help=f"{option.help} (env {option.env}, default {option.shown or _show(default)})",
            )
    return parser


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "false" if not value else "true"
    return "random" if value is None else str(value)


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Build the validated settings for one run; raise SettingsError on any bad input.

    `--help` and `--version` print and raise SystemExit(0), as argparse does.
    """
    argv = list(argv)
    command = "serve"
    if argv and argv[0] in COMMANDS:
        command = argv.pop(0)
    namespace = _parser(command).parse_args(argv)
    values: dict[str, object] = {"command": command}
    for option in OPTIONS:
        if command not in option.commands:
            continue
        flag_value = getattr(namespace, option.field)
        source, text = (option.flag, flag_value) if flag_value is not None else (option.env, environ.get(option.env))
        if text is None:
            continue
        try:
            values[option.field] = option.convert(text)
        except ValueError as exc:
            raise SettingsError(f"{source}={text!r} {exc}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_together(settings)
    return settings


def _check_together(settings: Settings) -> None:
    if settings.min_delay > settings.max_delay:
        raise SettingsError(
            f"--min-delay ({settings.min_delay:g}) must not be greater than --max-delay ({settings.max_delay:g})"
        )
    if settings.backoff_initial > settings.backoff_max:
        raise SettingsError(
            f"--backoff-initial ({settings.backoff_initial:g}) must not be greater than "
            f"--backoff-max ({settings.backoff_max:g})"
        )
