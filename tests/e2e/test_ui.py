"""The browser dashboard (`GET /ui`) in a real Chromium, against a real jinad running real Jina.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` Python package; the test skips
when either is missing. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import urljoin

import aiohttp
import pytest

from tests.conftest import EXECUTORS, form
from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, expect_daemon_status, open_page, start_chatty

SCREENSHOT = "/tmp/jinad-ui.png"
LINES = 2000  # chatty lines, plus its "chatty done"
T = 30_000  # ms: Playwright's deadline for one condition


@pytest.fixture
async def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is missing (pip install playwright)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            await chromium.close()


async def log_text(http, daemon, object_id: str, headers=None) -> str:
    async with http.get(f"{daemon.url}/logs/{object_id}?tail=all&follow=false", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


async def chatty_lines_shown(page) -> list[str]:
    """The chatty lines in the log view (the line text, without the timestamp column)."""
    return await page.evaluate(
        """() => [...document.querySelectorAll('#log-lines .ln.log')]
                 .map((d) => d.lastChild.textContent).filter((t) => t.startsWith('chatty '))"""
    )


async def delete_from_page(page, row) -> str:
    """Click the row's Delete, accept the confirm dialog; the dialog's message."""
    from playwright.async_api import expect

    messages = []

    async def accept(dialog):
        messages.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    await row.locator('button[data-action="delete"]').click()
    await expect(row).to_have_count(0, timeout=60_000)
    return messages[0]


async def test_dashboard_follows_a_pea_live_filters_pauses_and_deletes_it(http, daemon, browser):
    from playwright.async_api import expect

    page = await open_page(browser, daemon.url + "/ui")
    await expect_daemon_status(page)
    await expect(page.locator("#peas tbody td.empty")).to_have_text("No peas on this daemon", timeout=T)

    # Created after the page loaded: the row arrives through /events and the list re-fetch.
    pea = await start_chatty(http, daemon, LINES, start_delay=6.0)
    row = page.locator(f'#peas tbody tr[data-id="{pea["id"]}"]')
    await expect(row.locator(".state")).to_have_text("ready", timeout=T)
    await expect(row.locator('[data-col="address"]')).to_have_text(pea["address"], timeout=T)
    await expect(row.locator('[data-col="pid"]')).to_have_text(str(pea["pid"]), timeout=T)
    await expect(row.locator('[data-col="rss"]')).to_have_text(re.compile(r"^\d+(\.\d)? (KiB|MiB|GiB)$"), timeout=T)
    await expect(page.locator(f'#workspaces tbody tr[data-id="{pea["workspace_id"]}"] .state')).to_have_text("ready", timeout=T)

    # Open its log and pause before chatty speaks (it waits start_delay after its constructor).
    await row.locator('[data-col="id"]').click()
    view = page.locator("#log-view")
    await expect(view).to_have_attribute("data-id", pea["id"], timeout=T)
    await expect(view).to_have_attribute("data-conn", "following", timeout=T)
    await expect(row).to_have_class(re.compile(r"\bselected\b"), timeout=T)
    await page.locator("#log-pause").click()
    await expect(view).to_have_attribute("data-paused", "true", timeout=T)
    assert "chatty 0" not in await log_text(http, daemon, pea["id"]), (
        "chatty spoke before the page subscribed and paused; raise start_delay")

    # Paused: every line is received (counted as pending) but none is rendered.
    await page.wait_for_function(
        "n => +document.querySelector('#log-view').dataset.pending >= n", arg=LINES + 1, timeout=T)
    assert "chatty 0" not in await page.locator("#log-lines").inner_text()
    await expect(page.locator("#log-pause")).to_have_text(re.compile(r"^Resume \(\d"), timeout=T)

    # Resumed: everything that arrived is rendered, each line once, in order; stdout not in red.
    await page.locator("#log-pause").click()
    await expect(page.locator("#log-lines")).to_contain_text("chatty done", timeout=T)
    shown = await chatty_lines_shown(page)
    assert [line[:15] for line in shown[:-1]] == [f"chatty {i:08d}" for i in range(LINES)]
    assert shown[-1].startswith("chatty done")
    seqs = await page.eval_on_selector_all("#log-lines .ln.log", "ds => ds.map((d) => +d.dataset.seq)")
    assert seqs == sorted(set(seqs)), "no line twice, in order"
    assert await page.locator("#log-lines .ln.log.err", has_text="chatty ").count() == 0

    # The filter is a case-insensitive substring over the shown lines.
    await page.locator("#log-filter").fill("CHATTY 0000199")
    visible = page.locator("#log-lines .ln.log:visible")
    await expect(visible).to_have_count(10, timeout=T)
    assert all(re.search(r"chatty 0000199\d", t) for t in await visible.all_inner_texts())
    await expect(page.locator("#log-lines .ln.log", has_text="chatty done")).to_be_hidden(timeout=T)
    await page.locator("#log-filter").fill("")
    await expect(page.locator("#log-lines .ln.log", has_text="chatty done")).to_be_visible(timeout=T)

    # "Download" is the whole log as plain text.
    href = await page.locator("#log-download").get_attribute("href")
    assert "tail=all" in href and "follow=false" in href
    async with http.get(urljoin(daemon.url + "/ui", href)) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        assert sum(1 for line in (await resp.text()).splitlines() if line.startswith("chatty ")) == LINES + 1

    await page.screenshot(path=SCREENSHOT)

    # Restart from the page: a new process, and the open log view follows it too, no line twice.
    await row.locator('button[data-action="restart"]').click()
    await expect(row.locator('[data-col="pid"]')).not_to_have_text(str(pea["pid"]), timeout=T)
    await expect(row.locator(".state")).to_have_text("ready", timeout=T)
    await expect(page.locator("#log-lines .ln.log", has_text="chatty done")).to_have_count(2, timeout=T)
    seqs = await page.eval_on_selector_all("#log-lines .ln.log", "ds => ds.map((d) => +d.dataset.seq)")
    assert seqs == sorted(set(seqs)), "no line twice, in order"
    assert len(await chatty_lines_shown(page)) == 2 * (LINES + 1)
    # The view opened from the first line, so it shows the first start and the restart, once each.
    await expect(page.locator("#log-lines .note", has_text="state → starting")).to_have_count(2, timeout=T)

    message = await delete_from_page(page, row)
    assert pea["id"] in message
    async with http.get(daemon.url + "/peas") as resp:
        assert await resp.json() == []
    # The log view saw it stop twice (restart, delete), and its stream end.
    await expect(page.locator("#log-lines .note", has_text="state → stopped")).to_have_count(2, timeout=T)
    await expect(page.locator("#log-view")).to_have_attribute("data-conn", "ended", timeout=T)
    assert page.js_errors == []


async def test_dashboard_with_a_token_runs_a_flow_and_deletes_it_and_its_workspace(daemon_factory, browser):
    from playwright.async_api import expect

    daemon = daemon_factory("--token", "s3cret")
    auth = {"Authorization": "Bearer s3cret"}

    # The page itself is behind the token too (only `/` and the OpenAPI document are open).
    page = await browser.new_page()
    assert (await page.goto(daemon.url + "/ui", timeout=T)).status == 401
    await page.close()

    page = await open_page(browser, daemon.url + "/ui?token=s3cret")
    await expect_daemon_status(page)
    async with aiohttp.ClientSession(headers=auth, timeout=aiohttp.ClientTimeout(total=180)) as http:
        body = form(("flow", "flow.yml", EXECUTORS / "flow_http.yml"), ("files", "upper.py", EXECUTORS / "upper.py"))
        async with http.post(daemon.url + "/flows", data=body) as resp:
            assert resp.status == 201, await resp.text()
            flow = await resp.json()

        row = page.locator(f'#flows tbody tr[data-id="{flow["id"]}"]')
        await expect(row.locator(".state")).to_have_text("ready", timeout=T)
        await expect(row.locator('[data-col="ports"]')).to_contain_text(f'gateway:{flow["ports"]["gateway"]}', timeout=T)

        # Its log streams through EventSource with ?token=.
        await row.locator('button[data-action="logs"]').click()
        await expect(page.locator("#log-view")).to_have_attribute("data-conn", "following", timeout=T)
        await expect(page.locator("#log-lines")).to_contain_text("upper executor ready", timeout=T)
        href = await page.locator("#log-download").get_attribute("href")
        assert "token=s3cret" in href
        async with aiohttp.ClientSession() as anonymous:  # the token in the link is enough
            async with anonymous.get(urljoin(daemon.url + "/ui", href)) as resp:
                assert resp.status == 200 and "upper executor ready" in await resp.text()

        assert flow["id"] in await delete_from_page(page, row)
        ws_row = page.locator(f'#workspaces tbody tr[data-id="{flow["workspace_id"]}"]')
        await expect(ws_row.locator(".state")).to_have_text("ready", timeout=T)
        await delete_from_page(page, ws_row)
        for plural in ("flows", "workspaces"):
            async with http.get(f"{daemon.url}/{plural}") as resp:
                assert await resp.json() == []
    assert page.js_errors == []


async def test_dashboard_counts_agree_with_metrics_and_the_cli(daemon_factory, browser):
    from playwright.async_api import expect

    from tests.e2e.helpers import TOKEN, a_flow_and_a_failed_pea, authorized, counted, ok, scrape

    daemon = daemon_factory("--token", TOKEN)
    async with authorized() as http:
        flow, pea_id = await a_flow_and_a_failed_pea(http, daemon)
        page = await open_page(browser, f"{daemon.url}/ui?token={TOKEN}")
        await expect(page.locator(f'#flows tbody tr[data-id="{flow["id"]}"] .state')).to_have_text("ready", timeout=T)
        await expect(page.locator(f'#peas tbody tr[data-id="{pea_id}"] .state')).to_have_text("failed", timeout=T)
        await expect(page.locator("#workspaces tbody tr[data-id]")).to_have_count(2, timeout=T)
        # Each section's heading: its count, and a badge "N state" per state.
        shown = await page.evaluate("""() => [...document.querySelectorAll('section.kind')].map((s) => [
            s.id.replace(/s-section$/, ''), s.querySelector('[data-count]').textContent,
            [...s.querySelectorAll('.sum .badge')].map((b) => b.textContent)])""")
        metrics = counted(await scrape(http, daemon))
        on_page = {(kind, badge.split(" ", 1)[1]): int(badge.split(" ", 1)[0]) for kind, _, badges in shown for badge in badges}
        assert on_page == metrics
        totals = {kind: sum(n for (k, _), n in metrics.items() if k == kind) for kind, _, _ in shown}
        assert {kind: count for kind, count, _ in shown} == {kind: f"({n})" if n else "" for kind, n in totals.items()}
        status = json.loads(await ok(None, "status", "--json", env={"JINAD_HOST": daemon.url, "JINAD_TOKEN": TOKEN}))
        assert {(p[:-1], s): n for p in ("flows", "pods", "peas") for s, n in status[p].items()} == {
            key: n for key, n in metrics.items() if key[0] != "workspace"}
    assert page.js_errors == []


async def test_dashboard_shows_a_flows_parts(http, daemon, browser):
    from playwright.async_api import expect

    async with http.post(daemon.url + "/flows", data=form(("flow", "flow.yml", EXECUTORS / "flow_grpc.yml"),
                                                          ("files", "upper.py", EXECUTORS / "upper.py"))) as resp:
        flow = await resp.json()
        assert resp.status == 201, flow
    page = await open_page(browser, daemon.url + "/ui")
    cell = page.locator(f'#flows tbody tr[data-id="{flow["id"]}"] [data-col="parts"]')
    await expect(cell).to_have_text("2/2", timeout=T)  # its gateway and its one executor
    executor = flow["parts"][1]
    await expect(cell).to_have_attribute("title", re.compile(rf"upper/0 executor ready 127\.0\.0\.1:{executor['port']} pid {executor['pid']}"),
                                         timeout=T)
