"""`jinad`: start the daemon (`jinad --port-expose 8001`, settings as in configs/jinad.yml);
`jinad <command>` talks to one (see jinad/client/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import logging
import signal
import ssl
import sys
from pathlib import Path
from typing import IO

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from . import __version__, config as settings, local, tls
from .app import create_app
from .client import COMMANDS
from .ports import any_free_port
from .urls import netloc


class _ClientProtocolErrors(logging.Filter):
    """aiohttp logs a request it cannot parse (a bad header, an over-long line, a body that is
    not the gzip it says) as an ERROR with a traceback, and answers it 400 itself. A client
    sent it: say so at DEBUG only."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError):  # the body's own parse error, as its cause
            exc = exc.__cause__
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.DEBUG, "DEBUG", None, None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def lock_home(home: Path) -> IO:
    """One daemon per home: a second one would fight the first over the same children."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        handle = open(home / local.LOCK_FILE, "w")
    except OSError as exc:
        sys.exit(f"jinad: cannot use {home} as the daemon's home: {exc.strerror or exc}")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"jinad: another jinad already runs with home {home}; give this one --workspace DIR")
    return handle


def new_event_loop():
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        from .client import cli as client_cli  # only then: the daemon never needs it

        sys.exit(client_cli.main(argv))
    parser = argparse.ArgumentParser(
        prog="jinad", description="Deploy and manage Jina Flows, Pods and Peas over REST.",
        epilog=f"client commands: {', '.join(COMMANDS)} (jinad COMMAND --help)",
    )
    parser.add_argument("--version", action="version", version=f"jinad {__version__}")
    settings.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = settings.load(args)
    except (ValueError, OSError) as exc:  # a bad value, a settings file missing or not YAML
        parser.error(" ".join(str(exc).split()))
    if config.port_expose == 0:  # any free port: chosen here, so that the record and the log say which
        try:
            config = dataclasses.replace(config, port_expose=any_free_port(config.host))
        except OSError as exc:
            sys.exit(f"jinad: cannot listen on {config.host}: {exc.strerror or exc}")
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.server").addFilter(_ClientProtocolErrors())
    lock = lock_home(config.home)
    given_token = config.token
    config = local.resolve_token(config)
    log = logging.getLogger("jinad")
    if config.token:
        # Never the token itself: logs end up in places a token must not.
        log.info("auth is on: clients send 'Authorization: Bearer <token>'; `jinad` commands on this machine %s",
                 f"read it from {config.home / local.TOKEN_FILE}" if not given_token else "take it with --token or $JINAD_TOKEN")
    elif not local.is_loopback(config.host):
        log.warning("auth is off (--no-auth) on %s: anyone who reaches this port can run code here", config.host)

    def listening(_: str) -> None:
        try:
            local.write_record(config, token_from_file=bool(config.token) and not given_token)
        except OSError as exc:  # the daemon serves anyway; local clients then need --host and --token
            log.warning("could not write %s: %s", config.home / local.RECORD_FILE, exc)
        log.info("jinad %s listening on %s://%s (home %s); dashboard at %s/ui%s", __version__,
                 "https" if config.tls_cert else "http",
                 netloc(config.host or "0.0.0.0", config.port_expose), config.home,  # (aiohttp's empty host: every IPv4 address)
                 local.url_for(config.host, config.port_expose, bool(config.tls_cert)),
                 " (`jinad ui` prints it with the token)" if config.token else "")

    try:
        serve(config, listening)
    except ssl.SSLError as exc:  # a certificate, key or CA file that is not one, or a key of another certificate
        sys.exit(f"jinad: cannot use the TLS files {config.tls_cert}, {config.tls_key} {config.tls_ca}: {exc}")
    except OSError as exc:  # the port is taken, or the address is not this machine's
        sys.exit(f"jinad: cannot listen on {config.host}:{config.port_expose}: {exc.strerror or exc}")
    finally:
        lock.close()


def serve(config: settings.Config, listening) -> None:
    app = create_app(config)
    context = tls.server_context(config.tls_cert, config.tls_key, config.tls_ca) if config.tls_cert else None

    def on_sighup() -> None:
        if context is None:  # SIGHUP's default would end the daemon (a closed terminal sends it)
            logging.getLogger("jinad").info("SIGHUP: nothing to reload (no TLS certificate)")
        else:
            tls.reload(context, config.tls_cert, config.tls_key, config.tls_ca)

    async def handle_sighup(_: web.Application) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)

    app.on_startup.append(handle_sighup)
    web.run_app(
        app,
        ssl_context=context,
        host=config.host,
        port=config.port_expose,
        loop=new_event_loop(),
        access_log=None,
        shutdown_timeout=5,
        # A client that goes away cancels its handler (see api/front_door.py): streams end at once.
        handler_cancellation=True,
        print=listening,
    )


if __name__ == "__main__":
    main()
