#!/usr/bin/env python3
"""The account pages in a real browser: Debian's chromium driven by playwright.

Usage: web_browser.py BASE_URL ADMIN PASSWORD USER PASSWORD SCREENSHOT_DIR

ADMIN is listed in MAILROOM_ADMINS, USER is not. Logs in (wrong password refused),
walks every account page (a screenshot of each), has the admin page check DNS again
and show a missing record red with the value to publish (its Copy button fills the
clipboard), checks every page at a phone viewport (390x844: labels, button names, no
sideways scrolling, a visible focus ring on Tab), checks that a cookie from before
login is useless after it (fixation), that POSTs without or with a wrong CSRF token
get 403 (in the browser's context and as a raw POST), that a non-admin gets 403 on
/admin, logs out (the old cookie is dead), and finally that guessing is limited.
Prints "ok" at the end; any failed check raises.
"""

import concurrent.futures
import functools
import http.client
import sys
import time
import urllib.parse

from playwright.sync_api import sync_playwright

import webpage

BASE, ADMIN, ADMIN_PW, USER, USER_PW, SHOTS = sys.argv[1:7]
HOST = urllib.parse.urlsplit(BASE).netloc
COOKIE = webpage.COOKIE
shot = functools.partial(webpage.shot, SHOTS)
login = functools.partial(webpage.login, BASE)


def session_cookie(context):
    return next((c["value"] for c in context.cookies() if c["name"] == COOKIE), None)



def raw_post(path, cookie, body):
    """A POST with no browser in between: status and body."""
    conn = http.client.HTTPSConnection(HOST, context=webpage.insecure_tls(), timeout=60)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read().decode()
    conn.close()
    return resp.status, data


def raw_get(path, cookie=None):
    conn = http.client.HTTPSConnection(HOST, context=webpage.insecure_tls(), timeout=30)
    conn.request("GET", path, headers={"Cookie": f"{COOKIE}={cookie}"} if cookie else {})
    resp = conn.getresponse()
    headers = resp.getheaders()
    data = resp.read().decode()
    conn.close()
    return resp.status, headers, data


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        new_context = lambda: browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844})

        # --- anonymous: the account page sends us to the login page ---
        ctx = new_context()
        page = ctx.new_page()
        resp = page.goto(f"{BASE}/account")
        assert page.url.endswith("/account/login"), page.url
        headers = resp.all_headers()
        assert "default-src 'none'" in headers["content-security-policy"], headers
        assert headers["x-frame-options"] == "DENY", headers
        shot(page, "login")
        webpage.check_accessible(page)
        planted = session_cookie(ctx)
        assert planted, "the login page sets a pre-login cookie"

        # --- a wrong password is refused ---
        login(page, ADMIN, "not the password")
        assert "Wrong mail address or password" in page.content()
        assert page.url.endswith("/account/login"), page.url
        shot(page, "login-refused")

        # --- log in ---
        login(page, ADMIN, ADMIN_PW)
        assert page.url.endswith("/account"), page.url
        assert f"You are logged in as" in page.content() and ADMIN in page.content()
        shot(page, "account")
        logged_in = session_cookie(ctx)
        assert logged_in and logged_in != planted, "a new session at login"

        # --- fixation: the planted (pre-login) cookie is not a session ---
        attacker = new_context()
        attacker.add_cookies([{"name": COOKIE, "value": planted, "url": BASE, "secure": True, "httpOnly": True, "sameSite": "Strict"}])
        apage = attacker.new_page()
        apage.goto(f"{BASE}/account")
        assert apage.url.endswith("/account/login"), apage.url
        attacker.close()

        # --- every page renders (the backend may say it is not wired yet) ---
        for name, path in [
            ("password", "/account/password"),
            ("app-passwords", "/account/app-passwords"),
            ("vacation", "/account/vacation"),
            ("setup", "/account/setup"),
            ("admin", "/admin"),
        ]:
            page.goto(f"{BASE}{path}")
            assert page.url.endswith(path), page.url
            assert page.locator("h1").count() == 1
            shot(page, name)
            webpage.check_accessible(page)
        # --- the admin page: a new DNS check shows the missing records red, with the value ---
        page.goto(f"{BASE}/admin")
        submit_admin = page.get_by_role("button", name="Check DNS again")
        with page.expect_navigation():
            submit_admin.click()
        assert "A new DNS check has started" in page.content(), page.content()
        dmarc = page.locator("div.check.bad", has_text="_dmarc.example.com")
        for _ in range(120):
            if dmarc.count():
                break
            time.sleep(0.25)
            page.goto(f"{BASE}/admin")
        assert dmarc.count() == 1, page.content()
        assert "missing" in dmarc.inner_text(), dmarc.inner_text()
        assert "v=DMARC1" in dmarc.locator("code.copy").inner_text()
        shot(page, "admin-dns")
        # The copy button: our script (allowed on this page only) puts the value on the clipboard.
        resp = page.goto(f"{BASE}/admin")
        assert "script-src 'self'" in resp.all_headers()["content-security-policy"], resp.all_headers()
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=BASE)
        copy = page.get_by_role("button", name="Copy _dmarc.example.com. TXT")
        copy.click()
        page.get_by_text("Copied.").wait_for()
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied.startswith("v=DMARC1"), copied
        assert copied == dmarc.locator("code.copy").inner_text(), copied
        shot(page, "admin-copied")
        resp = page.goto(f"{BASE}/account")
        assert "script-src" not in resp.all_headers()["content-security-policy"], resp.all_headers()

        page.goto(f"{BASE}/account/setup")
        assert "Download the configuration profile" in page.content()
        href = page.get_by_role("link", name="Download the configuration profile").get_attribute("href")
        r = ctx.request.get(f"{BASE}{href}")
        assert r.status == 200 and r.headers["content-type"] == "application/x-apple-aspen-config", r.headers
        assert "attachment" in r.headers["content-disposition"], r.headers
        assert "com.apple.mail.managed" in r.text(), r.text()

        # --- CSRF: no token, a wrong token (browser context and raw) -> 403 ---
        r = ctx.request.post(f"{BASE}/account/password", form={"current": ADMIN_PW, "new": "x" * 12, "confirm": "x" * 12})
        assert r.status == 403, r.status
        r = ctx.request.post(f"{BASE}/account/password", form={"csrf": "AAAA", "current": ADMIN_PW, "new": "x" * 12, "confirm": "x" * 12})
        assert r.status == 403, r.status
        status, body = raw_post("/account/logout", logged_in, "")
        assert status == 403, (status, body)
        status, body = raw_post("/account/logout", logged_in, "csrf=wrong")
        assert status == 403, (status, body)
        # The token of the page works (the raw POST's refusals were the token's fault).
        page.goto(f"{BASE}/account")
        token = page.locator("input[name=csrf]").first.get_attribute("value")
        status, headers, _ = raw_get("/account", logged_in)
        assert status == 200, status

        # --- a non-admin gets 403 on /admin ---
        other = new_context()
        opage = other.new_page()
        login(opage, USER, USER_PW)
        assert opage.url.endswith("/account"), opage.url
        resp = opage.goto(f"{BASE}/admin")
        assert resp.status == 403, resp.status
        shot(opage, "admin-refused")
        other.close()

        # --- log out: back to the login page, the old cookie is dead ---
        page.goto(f"{BASE}/account")
        with page.expect_navigation():
            page.get_by_role("button", name=f"Log out {ADMIN}").click()
        assert page.url.endswith("/account/login"), page.url
        shot(page, "logged-out")
        status, headers, _ = raw_get("/account", logged_in)
        assert status == 303 and dict(headers).get("location") == "/account/login", (status, headers)
        assert token

        # --- brute force: parallel guesses from one address end in 429 ---
        ctx.close()
        ctx = new_context()
        page = ctx.new_page()
        page.goto(f"{BASE}/account/login")
        pre = session_cookie(ctx)
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        guess = urllib.parse.urlencode({"csrf": csrf, "address": USER, "password": "guess"})
        with concurrent.futures.ThreadPoolExecutor(max_workers=14) as pool:
            statuses = list(pool.map(lambda _: raw_post("/account/login", pre, guess)[0], range(14)))
        assert 429 in statuses, statuses
        assert set(statuses) <= {401, 429}, statuses
        right = urllib.parse.urlencode({"csrf": csrf, "address": USER, "password": USER_PW})
        status, body = raw_post("/account/login", pre, right)
        assert status == 429 and "Too many attempts" in body, (status, body)
        login(page, USER, USER_PW)
        assert "Too many attempts" in page.content()
        shot(page, "login-limited")
        browser.close()
    print("ok")


if __name__ == "__main__":
    main()
