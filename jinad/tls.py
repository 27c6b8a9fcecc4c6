"""TLS for the API: the daemon's server context (with client certificates under a CA, as
Docker's `--tlsverify`), its reload on SIGHUP, and the client contexts of `jinad` commands,
`Client`/`SyncClient` and daemon-to-daemon calls.

A client verifies the daemon against the system's CAs, or the CA it is given (`--tls-ca`,
`JINAD_TLS_CA`), and may show a certificate of its own (`--tls-cert`/`--tls-key`,
`JINAD_TLS_CERT`/`JINAD_TLS_KEY`). No HTTP server code here: clients import it too.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import Mapping

log = logging.getLogger(__name__)
ENV_CA, ENV_CERT, ENV_KEY = "JINAD_TLS_CA", "JINAD_TLS_CERT", "JINAD_TLS_KEY"


def server_context(cert: str, key: str, ca: str = "") -> ssl.SSLContext:
    """The daemon's context: its certificate and key; with `ca`, a client certificate signed
    by that CA is required (the handshake fails without one)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(cafile=ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def reload(context: ssl.SSLContext, cert: str, key: str, ca: str = "") -> bool:
    """Load a renewed certificate (and CA) into the running context: new connections get it,
    nothing restarts. On a bad file the old certificate stays and False is returned."""
    try:
        # Tried on a context of its own first: a certificate that does not match the key fails
        # half way, and would leave the running context with the new certificate and old key.
        server_context(cert, key, ca)
        context.load_cert_chain(cert, key)
        if ca:
            context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        log.error("could not reload the TLS certificate from %s (%s); the old one is kept", cert, exc)
        return False
    log.info("TLS certificate reloaded from %s", cert)
    return True


def remote_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """A daemon's context for other daemons' https:// URLs: its remote_tls_* settings only,
    the system's CAs when no CA is given."""
    return client_context(ca, cert, key, environ={}) or ssl.create_default_context()


def client_context(ca: str | None = None, cert: str | None = None, key: str | None = None,
                   environ: Mapping[str, str] = os.environ) -> ssl.SSLContext | None:
    """A client's context from files given, else from JINAD_TLS_*; None when neither names
    any, which leaves verification against the system's CAs (aiohttp's default)."""
    ca = ca or environ.get(ENV_CA) or None
    cert = cert or environ.get(ENV_CERT) or None
    key = key or environ.get(ENV_KEY) or None
    if not (ca or cert):
        return None
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context
