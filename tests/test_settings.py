"""Settings: defaults, flags over environment, and one clear error for every bad value."""

import pytest

from longpoll.settings import Settings, SettingsError, parse_settings


def test_defaults_match_the_original():
    settings = parse_settings([], {})
    assert settings == Settings()
    assert (settings.port, settings.timeout, settings.immediate_ratio) == (8000, 5.0, 0.5)
    assert (settings.min_delay, settings.max_delay, settings.enable_client) == (1.0, 10.0, False)


def test_environment_then_flags():
    env = {"PORT": "9000", "LONGPOLL_TIMEOUT": "2.5", "ENABLE_CLIENT": "true", "LONGPOLL_SEED": "3"}
    assert parse_settings([], env).port == 9000
    settings = parse_settings(["--port", "9100"], env)
    assert (settings.port, settings.timeout, settings.enable_client, settings.seed) == (9100, 2.5, True, 3)


@pytest.mark.parametrize("word", ["1", "t", "true", "TRUE", "True"])
def test_enable_client_true_words(word):
    assert parse_settings([], {"ENABLE_CLIENT": word}).enable_client is True


@pytest.mark.parametrize("word", ["0", "f", "false", "FALSE", "False"])
def test_enable_client_false_words(word):
    assert parse_settings([], {"ENABLE_CLIENT": word}).enable_client is False


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["--port", "abc"], {}, "--port='abc' is not a whole number"),
        ([], {"PORT": "http"}, "PORT='http' is not a whole number"),
        (["--port", "70000"], {}, "must be between 0 and 65535"),
        (["--timeout", "-1"], {}, "--timeout='-1' must be greater than 0"),
        (["--timeout", "0"], {}, "must be greater than 0"),
        (["--timeout", "nan"], {}, "must be a finite number"),
        (["--immediate-ratio", "1.5"], {}, "must be between 0 and 1"),
        (["--min-delay", "3", "--max-delay", "2"], {}, "--min-delay (3) must not be greater than --max-delay (2)"),
        (["--min-delay", "-1"], {}, "must be at least 0"),
        ([], {"ENABLE_CLIENT": "yes"}, "ENABLE_CLIENT='yes' must be one of"),
        (["--log-format", "xml"], {}, "must be one of: text, json"),
        ([], {"LONGPOLL_ACCESS_LOG": "off"}, "LONGPOLL_ACCESS_LOG='off' must be one of: all, errors, none"),
        (["--seed", "x"], {}, "is not a whole number"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        (["--port"], {}, "expected one argument"),
        (["client", "--url", "ftp://x/"], {}, "must be an http:// URL with a host"),
        (["client", "--url", "http://x:99999/"], {}, "has an invalid port"),
        (["client", "--port", "1"], {}, "unrecognized arguments: --port"),
        (["--backoff-initial", "5", "--backoff-max", "1"], {}, "must not be greater than --backoff-max"),
    ],
)
def test_bad_values_raise_one_line(argv, env, message):
    with pytest.raises(SettingsError) as caught:
        parse_settings(argv, env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_commands_and_their_options():
    client = parse_settings(["client", "--url", "http://server:8000/", "--timeout", "2"], {})
    assert (client.command, client.url, client.timeout) == ("client", "http://server:8000/", 2.0)
    assert client.client_timeout > client.timeout
    health = parse_settings(["healthcheck"], {"PORT": "8123"})
    assert (health.command, health.port) == ("healthcheck", 8123)


@pytest.mark.parametrize("command", [[], ["client"], ["healthcheck"]])
def test_help_and_version_exit_0(command, capsys):
    for flag in ("--help", "--version"):
        with pytest.raises(SystemExit) as caught:
            parse_settings([*command, flag], {})
        assert caught.value.code == 0
    assert "long-poll" in capsys.readouterr().out


def test_abbreviated_flags_are_not_guessed():
    with pytest.raises(SettingsError):
        parse_settings(["--por", "1"], {})


def test_event_stream_settings_from_flags_and_environment():
    env = {"LONGPOLL_RETENTION_COUNT": "50", "LONGPOLL_MAX_POLL_TIMEOUT": "2.5", "LONGPOLL_PUBLISH_DEMO": "demo"}
    settings = parse_settings(["--max-channels", "7", "--max-event-bytes", "100", "--retention-seconds", "9"], env)
    assert (settings.retention_count, settings.max_poll_timeout, settings.publish_demo) == (50, 2.5, "demo")
    assert (settings.max_channels, settings.max_event_bytes, settings.retention_seconds) == (7, 100, 9.0)
    client = parse_settings(["client", "--follow", "news", "--cursor", "12"], {})
    assert (client.follow, client.cursor) == ("news", 12)
    assert parse_settings(["client"], {}).cursor is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--publish-demo", "a b"], "--publish-demo='a b' must be a channel name matching"),
        (["client", "--follow", "x/y"], "--follow='x/y' must be a channel name"),
        (["client", "--cursor", "-1"], "--cursor='-1' must be between 0 and"),
        (["--max-poll-timeout", "0"], "--max-poll-timeout='0' must be greater than 0"),
        (["--retention-count", "0"], "--retention-count='0' must be between 1 and"),
        (["--max-channels", "x"], "--max-channels='x' is not a whole number"),
    ],
)
def test_bad_event_stream_values_raise_one_line(argv, message):
    with pytest.raises(SettingsError) as caught:
        parse_settings(argv, {})
    assert message in str(caught.value)


def test_access_log_from_flag_and_environment():
    assert parse_settings([], {}).access_log == "all"
    assert parse_settings([], {"LONGPOLL_ACCESS_LOG": "none"}).access_log == "none"
    assert parse_settings(["--access-log", "errors"], {"LONGPOLL_ACCESS_LOG": "none"}).access_log == "errors"
