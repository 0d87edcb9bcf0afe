"""What the console refuses (SPEC §14): a wrong password, a form without this session's CSRF
token, a malformed form, an unknown unit, an idle session (locked: sign in again), and a
non-loopback address without TLS. Each gets one clear sentence, never a traceback; the cookie is
HttpOnly and SameSite=Strict and no password is kept."""

from __future__ import annotations

import subprocess

from console_rig import BIN, PASSWORD, Instrument, sign_in
from playwright.sync_api import expect


def test_a_wrong_password_is_refused(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "olga", password="not-the-password")
    expect(page.get_by_role("alert")).to_have_text(
        "Sign-in refused: wrong user name or password, or the account is locked.")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "shuttle_console"]
    page.context.close()


def test_the_session_cookie_is_http_only_and_strict(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "vic")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "shuttle_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert PASSWORD["vic"] not in page.content()
    assert page.evaluate("document.cookie") == ""  # invisible to scripts
    page.context.close()


def test_a_form_without_the_sessions_csrf_token_is_refused(instrument: Instrument,
                                                           browser) -> None:
    page = sign_in(browser, instrument.console, "olga")
    page.goto(f"{instrument.console}/units/U03")
    page.locator('form[aria-label="Commands"] input[name="csrf"]').evaluate(
        "el => el.value = 'forged'")
    commands = page.get_by_role("form", name="Commands")
    commands.get_by_label("Reason").fill("forged")
    commands.get_by_role("button", name="Hold").click()
    expect(page.get_by_role("heading", name="Form expired")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("CSRF check")
    # a cross-site POST carries no token either (and no cookie: SameSite=Strict)
    response = page.request.post(f"{instrument.console}/units/U03/command",
                                 form={"command": "Hold", "reason": "x"})
    assert response.status == 403 and "CSRF check" in response.text()
    page.context.close()


def test_malformed_forms_and_unknown_units_get_a_clear_page(instrument: Instrument,
                                                            browser) -> None:
    page = sign_in(browser, instrument.console, "olga")
    page.goto(f"{instrument.console}/units/U99")
    expect(page.get_by_role("heading", name="Unknown unit")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("There is no unit 'U99'")
    response = page.goto(f"{instrument.console}/no/such/page")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    csrf = page.evaluate("fetch('/units/U03').then(r => r.text())"
                         ".then(t => t.match(/name=\"csrf\" value=\"([^\"]+)\"/)[1])")
    broken = page.request.post(f"{instrument.console}/units/U03/command",
                               headers={"Content-Type": "multipart/form-data; boundary=x"},
                               data=b"--x\r\nContent-Disposition: form-data\r\n\r\nno end")
    assert broken.status in (400, 403) and "Traceback" not in broken.text()
    unknown = page.request.post(f"{instrument.console}/units/U03/command",
                                form={"csrf": csrf, "command": "Explode", "reason": "x"})
    assert unknown.status == 400 and "is not a command (Hold, Restart" in unknown.text()
    missing = page.request.post(f"{instrument.console}/units/U03/command",
                                form={"csrf": csrf, "command": "Hold", "reason": "  "})
    assert missing.status == 400 and "Reason is required." in missing.text()
    refused = page.request.post(f"{instrument.console}/units/U03/command",
                                form={"csrf": csrf, "command": "Restart", "reason": "x"})
    assert refused.status == 409 and "Restart refused" in refused.text()
    assert "BadInvalidState" in refused.text()
    page.context.close()


def test_an_idle_session_locks_and_must_sign_in_again(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.locking_console, "olga")  # --idle-lock-s 2
    expect(page.get_by_role("region", name="U01")).to_be_visible()
    # the live page notices by itself and goes to the sign-in page
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=15_000)
    page.goto(f"{instrument.locking_console}/units/U01")
    expect(page.get_by_role("alert")).to_contain_text("Your session locked after")
    expect(page.get_by_role("alert")).to_contain_text("Sign in again.")
    page.get_by_label("User name").fill("olga")
    page.get_by_label("Password").fill(PASSWORD["olga"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("region", name="U01")).to_be_visible()
    assert page.url.endswith("/units/U01")  # back where the person was going
    page.context.close()


def test_no_plain_http_beyond_loopback() -> None:
    done = subprocess.run([str(BIN / "shuttled"), "console", "--listen", "0.0.0.0:0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 without TLS" in done.stderr
    assert "Traceback" not in done.stderr


def test_who_am_i_comes_from_the_daemon(instrument: Instrument) -> None:
    """The console hides controls by the daemon's own role table (Users.WhoAmI)."""
    import asyncio
    import json

    from shuttled.client.opcua import call, open_connection

    async def ask() -> dict:
        conn = await open_connection(instrument.endpoint, "quinn", PASSWORD["quinn"],
                                     instrument.data_dir / "test-pki")
        try:
            (text,) = await call(conn, await conn.child("Users"), "WhoAmI", [])
            return json.loads(text)
        finally:
            await conn.close()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API may own this thread's loop
        identity = thread.submit(asyncio.run, ask()).result()
    assert identity["user"] == "quinn" and identity["role"] == "qa"
    assert identity["full_name"] == "Quinn QA"
    assert "ApproveProtocol" in identity["may"] and "Hold" not in identity["may"]
