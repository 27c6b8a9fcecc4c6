"""The daemon's settings: defaults here, then a YAML file, then JINAD_* variables, then flags.

Every field is one setting under one name: `port_expose` in YAML, `JINAD_PORT_EXPOSE` in the
environment, `--port-expose` on the command line. One field has an outside name of its own:
`home`, the daemon's folder, is `workspace` there (the original JinaD's `--workspace`), while
inside a workspace is always an uploaded folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping


from .local import DEFAULT_HOME, DEFAULT_PORT
from .urls import daemon_url, host_name

DEFAULT_CONFIG_FILE = Path("configs/jinad.yml")
# Numeric settings that may be 0 (every other whole number must be at least 1, every other
# float above 0): no grace, no backups, no restarts, any free port for the API.
AT_LEAST_ZERO = frozenset({"port_expose", "stop_grace_s", "log_file_backups", "restart_max_retries"})


def setting(default: Any, help: str, name: str | None = None) -> Any:
    """A field of Config with its help text, the one place a setting is described (flags'
    --help shows it; configs/jinad.yml is checked against the fields by a test); `name` is the
    setting's name outside when it is not the field's."""
    return dataclasses.field(default=default, metadata={"help": help, **({"name": name} if name else {})})


def outside_name(field: dataclasses.Field) -> str:
    """The setting's name in YAML, in JINAD_* variables (upper case) and flags (with dashes)."""
    return field.metadata.get("name", field.name)


@dataclasses.dataclass(frozen=True)
class Config:
    host: str = setting("0.0.0.0", "address to listen on")
    port_expose: int = setting(DEFAULT_PORT, "port of the REST API")
    advertise_host: str = setting("", "host name or address put in objects' addresses, which clients on other machines "
                                      "dial (default: the host each client used to reach the daemon)")
    home: Path = setting(Path(DEFAULT_HOME), "the daemon's home: its state, workspaces and logs", name="workspace")
    token: str = setting("", "bearer token clients must send (empty on a non-loopback address: one is made and kept)")
    no_auth: bool = setting(False, "serve without a token even on a non-loopback address")
    max_upload_bytes: int = setting(1024 * 1024 * 1024, "largest upload body accepted (unpacked archives count too)")
    max_upload_files: int = setting(10000, "most files one upload may hold")
    max_workspace_bytes: int = setting(10 * 1024 * 1024 * 1024, "largest total size of one workspace")
    max_json_bytes: int = setting(1024 * 1024, "largest JSON request body")
    max_yaml_bytes: int = setting(1024 * 1024, "largest Flow YAML accepted")
    max_yaml_depth: int = setting(50, "deepest nesting of a Flow YAML accepted")
    max_json_depth: int = setting(32, "deepest nesting of a JSON body or form field accepted")
    max_running_objects: int = setting(100, "most Flows, Pods and Peas starting or running at once")
    remote_tokens: str = setting("", "tokens for other daemons, as URL=TOKEN[,URL=TOKEN...]")
    tls_cert: str = setting("", "PEM certificate (chain) to serve the API over HTTPS with (with tls_key); SIGHUP reloads it")
    tls_key: str = setting("", "PEM private key of tls_cert")
    tls_ca: str = setting("", "PEM CA: clients must show a certificate it signed (mutual TLS; needs tls_cert)")
    remote_tls_ca: str = setting("", "PEM CA to verify other daemons' https:// URLs with (default: the system's CAs)")
    remote_tls_cert: str = setting("", "PEM client certificate shown to other daemons (with remote_tls_key)")
    remote_tls_key: str = setting("", "PEM private key of remote_tls_cert")
    port_range: str = setting("20000-29999",
                              "ports for Flows, Pods and Peas, as LOW-HIGH (the last fifth for the ones Jina picks itself)")
    start_timeout_s: float = setting(120.0, "default seconds an object may take to become ready")
    stop_grace_s: float = setting(10.0, "seconds between SIGTERM and SIGKILL of a process group")
    restart_max_retries: int = setting(5, "restarts in a row before a restart policy gives up")
    resource_interval_s: float = setting(2.0, "seconds between resource samples of running objects")
    log_ring_lines: int = setting(10000, "lines of each object's log kept in memory")
    log_ring_bytes: int = setting(4 * 1024 * 1024, "bytes of each object's log kept in memory")
    log_max_line_bytes: int = setting(16 * 1024, "longer output lines are split at this size")
    log_file_max_bytes: int = setting(50 * 1024 * 1024, "a log file past this size is rotated")
    log_file_backups: int = setting(5, "rotated log files kept per object")
    log_level: str = setting("INFO", "the daemon's own log level")
    live_restore: bool = setting(False, "SIGTERM/SIGINT leave Flows, Pods and Peas running for the next daemon (upgrades)")

    def __post_init__(self) -> None:
        """Refuse values the daemon cannot work with, by name, rather than failing later."""
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        span = self._port_span if re.fullmatch(r"\d+-\d+", self.port_range) else range(0)
        if len(span) < 10 or span.start < 1 or span.stop > 65536:
            raise ValueError(f"port_range must be LOW-HIGH within 1-65535 with at least 10 ports, not {self.port_range!r}")
        if not 0 <= self.port_expose <= 65535:
            raise ValueError(f"port_expose must be a port number from 0 to 65535, not {self.port_expose}")
        if logging.getLevelName(self.log_level.upper()) not in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {self.log_level!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            zero_ok = field.name in AT_LEAST_ZERO
            if isinstance(value, int) and value < (0 if zero_ok else 1):
                raise ValueError(f"{field.name} must be a whole number of at least {0 if zero_ok else 1}, not {value}")
            if isinstance(value, float) and not (0 <= value if zero_ok else 0 < value) or not value < math.inf:
                raise ValueError(f"{field.name} must be a finite number {'of at least 0' if zero_ok else 'above 0'}, not {value}")
        if bool(self.tls_cert) != bool(self.tls_key) or bool(self.remote_tls_cert) != bool(self.remote_tls_key):
            raise ValueError("a TLS certificate needs its key and a key its certificate (tls_cert with tls_key, "
                             "remote_tls_cert with remote_tls_key)")
        if self.tls_ca and not self.tls_cert:
            raise ValueError("tls_ca (client certificates) needs tls_cert and tls_key: there is no TLS without them")
        # A space or control character could never be matched: header values come trimmed.
        if any(c.isspace() or not c.isprintable() for c in self.token):
            raise ValueError("token must be printable characters without spaces")
        self.tokens_by_remote  # noqa: B018 - raises on a pair that is not URL=TOKEN
        if self.advertise_host:
            try:
                host_name(self.advertise_host)
            except ValueError as exc:
                raise ValueError(f"advertise_host: {exc}") from None

    @property
    def _port_span(self) -> range:
        low, _, high = self.port_range.partition("-")
        return range(int(low), int(high) + 1)

    @property
    def ports(self) -> range:
        """The ports the daemon hands to Flows, Pods and Peas: port_range but its last fifth."""
        span = self._port_span
        return range(span.start, span.stop - len(span) // 5)

    @property
    def jina_ports(self) -> range:
        """The last fifth of port_range, for the ports Jina picks by itself (replicas, heads).
        Kept apart because Jina picks a port seconds before it binds it, and the daemon must not
        hand the same one to another object meanwhile."""
        return range(self.ports.stop, self._port_span.stop)

    @property
    def tokens_by_remote(self) -> dict[str, str]:
        """remote_tokens by daemon URL; ValueError for a pair without a URL or a token, or a
        URL given twice."""
        tokens: dict[str, str] = {}
        for item in filter(str.strip, self.remote_tokens.split(",")):
            url, _, token = item.rpartition("=")
            try:
                url = daemon_url(url.strip())
            except ValueError as exc:
                raise ValueError(f"remote_tokens must be URL=TOKEN[,URL=TOKEN...]: {exc}") from None
            if not token.strip() or url in tokens:
                raise ValueError(f"remote_tokens must give one token to each URL: {url} has "
                                 f"{'none' if not token.strip() else 'two'}")
            tokens[url] = token.strip()
        return tokens

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def truth(text: str | None, default: bool, strict: bool = False) -> bool:
    """A true/false setting or query value as people write them; `default` when absent or
    empty, and when neither unless `strict` (then ValueError: a query's `?follow=maybe` is a
    400, not a guess). The one parser for all of them."""
    word = (text or "").lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    if word and strict:
        raise ValueError(f"{text!r} is not one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
    return default


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    kind = type(field.default)
    if isinstance(value, kind):
        return value
    if kind is bool:
        return truth(str(value), False)
    return kind(str(value)) if issubclass(kind, Path) else kind(value)


def _known(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    fields = {outside_name(f): f for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{origin}: unknown setting(s) {', '.join(unknown)}")
    try:
        return {fields[name].name: _coerce(fields[name], value) for name, value in values.items()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{origin}: {exc}") from None


def read_file(path: Path) -> dict[str, Any]:
    import yaml  # only when there is a settings file: ~1 MB of an idle daemon otherwise

    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return _known(loaded, str(path))


def read_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    names = {f"JINAD_{outside_name(f).upper()}": outside_name(f) for f in dataclasses.fields(Config)}
    return _known({names[k]: v for k, v in environ.items() if k in names}, "environment")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"settings file (default: {DEFAULT_CONFIG_FILE} if present)")
    for field in dataclasses.fields(Config):
        flag = "--" + outside_name(field).replace("_", "-")
        if isinstance(field.default, bool):
            parser.add_argument(flag, dest=field.name, action="store_const", const=True, default=None, help=field.metadata["help"])
        else:
            parser.add_argument(flag, dest=field.name, metavar=outside_name(field).upper(), default=None,
                                help=f"{field.metadata['help']} (default: {field.default})")


def load(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Config:
    """Merge defaults, the settings file, JINAD_* variables and flags, later ones winning."""
    values: dict[str, Any] = {}
    config_file = args.config or environ.get("JINAD_CONFIG")
    if config_file:
        values.update(read_file(Path(config_file)))
    elif DEFAULT_CONFIG_FILE.is_file():
        values.update(read_file(DEFAULT_CONFIG_FILE))
    values.update(read_environ(environ))
    flags = {outside_name(f): f.name for f in dataclasses.fields(Config)}
    values.update(_known({n: getattr(args, dest) for n, dest in flags.items() if getattr(args, dest) is not None}, "flags"))
    return Config(**values)
