"""The API over HTTPS with the test's own CA: CLI, Python clients and a log follower; client
certificates under --tls-ca; a renewed certificate reloaded on SIGHUP; a Flow over two daemons
on https:// URLs, and a clear 422 when the remote's certificate is not trusted."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import shutil
import socket
import ssl
import subprocess

import aiohttp
import pytest

from jinad.client.api import Client
from jinad.client.sync import SyncClient
from tests.conftest import EXECUTORS, JINAD, REPO, form, wait_until
from tests.e2e.helpers import ask_http, remote_flow
from tests.pki import issue, make_ca, make_pki

UPPER = ("files", "upper.py", EXECUTORS / "upper.py")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def https(daemon) -> str:
    return f"https://{daemon.host}:{daemon.port}"


def tls_daemon(daemon_factory, pki, *extra: str, host: str = "127.0.0.1"):
    return daemon_factory("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), *extra, host=host)


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JINAD_")}
    return subprocess.run([str(JINAD), *argv], capture_output=True, text=True, cwd=REPO, env={**clean, **(env or {})}, timeout=120)


def peer_name(url_host: str, port: int, ca) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((url_host, port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=url_host) as tls:
        return dict(item[0] for item in tls.getpeercert()["subject"])["commonName"]


async def test_cli_clients_contexts_and_a_log_follower_over_https(daemon_factory, pki, tmp_path):
    daemon = tls_daemon(daemon_factory, pki)
    url = https(daemon)
    # The Python clients, verifying against the test's CA.
    with SyncClient(url, token="", tls_ca=str(pki.ca)) as jd:
        assert jd.status()["jinad"]["port"] == daemon.port
        workspace = jd.upload([("upper.py", EXECUTORS / "upper.py")])
    async with Client(url, token="", tls_ca=str(pki.ca)) as jd:
        pea = await jd.create("pea", workspace_id=workspace["id"], uses="Upper", py_modules=["upper.py"])
        lines = [entry async for entry in jd.logs(pea["id"], tail="all", follow=False)]  # the SSE follower
        assert any(entry.get("event") == "log" for entry in lines)
        await jd.delete(pea["id"])
        await jd.delete(workspace["id"])
    # Not trusted without the CA: the system's CAs do not know it.
    async with Client(url, token="", tls_ca=None) as jd:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await jd.status()
    # Plain HTTP on the HTTPS port gets no answer of the API.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(daemon.url + "/") as resp:
                await resp.read()
    # The CLI, with the flag and with JINAD_TLS_CA.
    done = cli("status", "--host", url, "--tls-ca", str(pki.ca))
    assert done.returncode == 0, done.stderr
    done = cli("ls", "--host", url, env={"JINAD_TLS_CA": str(pki.ca)})
    assert done.returncode == 0, done.stderr
    done = cli("status", "--host", url)
    assert done.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in done.stderr, done.stderr
    # A context keeps the CA: the CLI and a Client with no URL use it.
    book = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = cli("context", "add", "secure", url, "--tls-ca", str(pki.ca), env=book)
    assert done.returncode == 0, done.stderr
    done = cli("status", "--context", "secure", env=book)
    assert done.returncode == 0, done.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", book["XDG_CONFIG_HOME"])
        patch.setenv("JINAD_CONTEXT", "secure")
        with SyncClient() as jd:
            assert jd.status()["jinad"]["port"] == daemon.port
    # The image's HEALTHCHECK finds the https:// URL in the home and asks it.
    health = subprocess.run([str(JINAD.parent / "python"), "-m", "jinad.healthcheck"], capture_output=True, text=True,
                            env={**os.environ, "JINAD_WORKSPACE": str(daemon.home)}, timeout=30)
    assert health.returncode == 0 and health.stdout.startswith(url), health.stdout


async def test_client_certificates_are_required_under_tls_ca(daemon_factory, pki, tmp_path):
    daemon = tls_daemon(daemon_factory, pki, "--tls-ca", str(pki.ca))
    url = https(daemon)
    async with Client(url, token="", tls_ca=str(pki.ca)) as jd:  # no client certificate
        with pytest.raises((aiohttp.ClientError, ConnectionError)):
            await jd.status()
    # A certificate from another CA is refused too.
    stranger = issue(tmp_path, make_ca(tmp_path, "other"), "stranger", client=True)
    async with Client(url, token="", tls_ca=str(pki.ca), tls_cert=str(stranger[0]), tls_key=str(stranger[1])) as jd:
        with pytest.raises((aiohttp.ClientError, ConnectionError)):
            await jd.status()
    async with Client(url, token="", tls_ca=str(pki.ca), tls_cert=str(pki.client_cert), tls_key=str(pki.client_key)) as jd:
        assert (await jd.status())["jinad"]["port"] == daemon.port
    done = cli("status", "--host", url, "--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key))
    assert done.returncode == 0, done.stderr
    done = cli("status", "--host", url, "--tls-ca", str(pki.ca))
    assert done.returncode == 3, done.stderr


async def test_a_renewed_certificate_is_served_after_sighup(daemon_factory, pki, tmp_path):
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    daemon = daemon_factory("--tls-cert", str(cert), "--tls-key", str(key))
    assert peer_name("127.0.0.1", daemon.port, pki.ca) == "server"
    renewed = issue(tmp_path, (pki.ca, pki.ca.with_suffix(".key")), "renewed")
    shutil.copy(renewed[0], cert)
    shutil.copy(renewed[1], key)
    daemon.proc.send_signal(signal.SIGHUP)
    for _ in range(50):
        if peer_name("127.0.0.1", daemon.port, pki.ca) == "renewed":
            break
        await asyncio.sleep(0.1)
    assert peer_name("127.0.0.1", daemon.port, pki.ca) == "renewed"
    assert daemon.proc.poll() is None


async def test_a_certificate_that_does_not_match_its_key_keeps_the_old_one_serving(daemon_factory, pki, tmp_path):
    """Copying the new certificate before the new key, then SIGHUP: the old pair keeps serving
    (the half-loaded context answered no handshake at all)."""
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    daemon = daemon_factory("--tls-cert", str(cert), "--tls-key", str(key))
    renewed = issue(tmp_path, (pki.ca, pki.ca.with_suffix(".key")), "renewed")
    shutil.copy(renewed[0], cert)  # the key is still the old one
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: "could not reload the TLS certificate" in daemon.log_text(), 10, "the reload to be refused")
    assert peer_name("127.0.0.1", daemon.port, pki.ca) == "server"


async def test_a_flow_over_two_daemons_on_https(http, daemon_factory, pki):
    a = daemon_factory("--remote-tls-ca", str(pki.ca))
    b = tls_daemon(daemon_factory, pki, host="127.0.0.2")
    flow_yaml = remote_flow(("upper_b", https(b), ""))
    async with http.post(a.url + "/flows", data=form(("flow", "flow.yml", flow_yaml), UPPER)) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    assert await ask_http(http, flow["ports"]["gateway"], "hi") == "HI"
    async with http.delete(f"{a.url}/flows/{flow['id']}") as resp:
        assert resp.status == 200
    async with Client(https(b), token="", tls_ca=str(pki.ca)) as jd:
        assert await jd.list("pod") == []


async def test_an_untrusted_remote_certificate_is_a_clear_422(http, daemon_factory, pki):
    a = daemon_factory()  # trusts the system's CAs only
    b = tls_daemon(daemon_factory, pki, host="127.0.0.2")
    async with http.post(a.url + "/flows", data=form(("flow", "flow.yml", remote_flow(("upper_b", https(b), ""))), UPPER)) as resp:
        assert resp.status == 422
        error = await resp.json()
    assert error["error"] == "failed_to_start"
    assert "upper_b" in error["message"] and "certificate of the daemon at" in error["message"], error["message"]
    assert "--remote-tls-ca" in error["message"]
    print(error["message"])
    async with Client(https(b), token="", tls_ca=str(pki.ca)) as jd:
        assert await jd.list("pod") == [] and await jd.workspaces() == []


def spki_pin(cert) -> str:
    """base64 of the SHA-256 of the certificate's public key, as Chromium pins it."""
    der = subprocess.run(f"openssl x509 -in {cert} -pubkey -noout | openssl pkey -pubin -outform der", shell=True,
                         capture_output=True, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


async def test_the_dashboard_in_chromium_over_https(daemon_factory, pki):
    from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, expect_daemon_status, open_page

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is missing (pip install playwright)")
    daemon = tls_daemon(daemon_factory, pki)
    # Chromium trusts exactly this certificate's key (its own CA store does not know the test's
    # CA); without the pin it refuses the page with ERR_CERT_AUTHORITY_INVALID.
    args = [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_pin(pki.server_cert)}"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args, timeout=60_000)
        try:
            page = await open_page(browser, https(daemon) + "/ui")
            await expect_daemon_status(page)  # /status fetched and the /events stream live, over HTTPS
            assert page.url.startswith("https://") and not page.js_errors, page.js_errors
        finally:
            await browser.close()


async def test_a_tls_flow_serves_its_gateway_with_the_daemons_certificate(http, daemon_factory, pki):
    daemon = tls_daemon(daemon_factory, pki)
    async with Client(https(daemon), token="", tls_ca=str(pki.ca)) as jd:
        flow = await jd.create_flow(EXECUTORS / "flow_http.yml", EXECUTORS, tls=True)
        try:
            port = flow["ports"]["gateway"]
            context = ssl.create_default_context(cafile=str(pki.ca))
            async with http.post(f"https://127.0.0.1:{port}/default", json={"data": [{"text": "hi"}]}, ssl=context) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["data"][0]["text"] == "HI"
            with pytest.raises(aiohttp.ClientError):  # plain HTTP on its port gets no answer
                await ask_http(http, port, "hi")
        finally:
            await jd.delete(flow["id"])
            await jd.delete(flow["workspace_id"])
    plain = daemon_factory()
    async with Client(plain.url, token="") as jd:
        with pytest.raises(Exception) as refused:
            await jd.create_flow(EXECUTORS / "flow_http.yml", EXECUTORS, tls=True)
        assert refused.value.status == 400 and "--tls-cert" in refused.value.message
