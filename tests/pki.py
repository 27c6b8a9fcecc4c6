"""A test's own CA, server and client certificates, made with the `openssl` command."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _run(*argv: str) -> None:
    subprocess.run(["openssl", *argv], check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_ca(folder: Path, name: str = "ca") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", f"/CN=jinad test {name}", "-keyout", str(key), "-out", str(cert))
    return cert, key


def issue(folder: Path, ca: tuple[Path, Path], name: str, client: bool = False) -> tuple[Path, Path]:
    """A certificate signed by `ca`: for 127.0.0.1-3 and localhost, or for a client."""
    cert, key, csr, ext = (folder / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr", ".ext"))
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
         "-keyout", str(key), "-out", str(csr))
    ext.write_text("extendedKeyUsage = clientAuth\n" if client else
                   "subjectAltName = IP:127.0.0.1, IP:127.0.0.2, IP:127.0.0.3, DNS:localhost\nextendedKeyUsage = serverAuth\n")
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial", "-days", "2",
         "-extfile", str(ext), "-out", str(cert))
    return cert, key


def make_pki(folder: Path) -> Pki:
    ca = make_ca(folder)
    server = issue(folder, ca, "server")
    client = issue(folder, ca, "client", client=True)
    return Pki(ca[0], *server, *client)
