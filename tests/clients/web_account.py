#!/usr/bin/env python3
"""Account self-service in a real browser, checked with real mail clients.

Usage: web_account.py BASE_URL USER PASSWORD NEW_PASSWORD OTHER OTHER_PASSWORD IMAPS SUBMISSIONS SCREENSHOT_DIR

IMAPS and SUBMISSIONS are host:port. USER changes the password in the browser (then IMAP
takes the new one and refuses the old; USER's session in another browser context ends,
the one that changed it goes on), creates an app password (SMTP AUTH and IMAP take
it), revokes it (refused), requires app passwords (IMAP then refuses the main password,
the web still takes it), and turns the vacation reply on: a message from OTHER to USER
brings the reply to OTHER's INBOX. Prints "ok" at the end; any failed check raises.
"""

import email
import functools
import imaplib
import smtplib
import sys
import time

from playwright.sync_api import sync_playwright

import webpage
from webpage import insecure_tls

BASE, USER, OLD_PW, NEW_PW, OTHER, OTHER_PW, IMAPS, SUBMISSIONS, SHOTS = sys.argv[1:10]
shot = functools.partial(webpage.shot, SHOTS)
login = functools.partial(webpage.login, BASE)


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def imap_login_works(user, password):
    host, port = hostport(IMAPS)
    m = imaplib.IMAP4_SSL(host, port, ssl_context=insecure_tls(), timeout=30)
    try:
        m.login(user, password)
        m.logout()
        return True
    except imaplib.IMAP4.error:
        return False


def smtp_login_works(user, password):
    host, port = hostport(SUBMISSIONS)
    with smtplib.SMTP_SSL(host, port, context=insecure_tls(), timeout=30) as s:
        try:
            s.login(user, password)
            return True
        except smtplib.SMTPAuthenticationError:
            return False


def submit(page, button):
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()


def wait_for_reply(subject):
    """OTHER's INBOX until a message with `subject` is there (the reply goes through the queue)."""
    host, port = hostport(IMAPS)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = imaplib.IMAP4_SSL(host, port, ssl_context=insecure_tls(), timeout=30)
        m.login(OTHER, OTHER_PW)
        m.select("INBOX", readonly=True)
        _, data = m.uid("SEARCH", None, "ALL")
        for uid in data[0].split():
            _, msg = m.uid("FETCH", uid, "(RFC822)")
            parsed = email.message_from_bytes(msg[0][1])
            if parsed["Subject"] == subject:
                m.logout()
                return parsed
        m.logout()
        time.sleep(0.5)
    raise AssertionError(f"no reply with subject {subject!r} in {OTHER}'s INBOX")


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844})
        page = ctx.new_page()
        login(page, USER, OLD_PW)
        assert page.url.endswith("/account"), page.url
        # A second session of the same account (another device), and its cookie for a raw client.
        elsewhere = browser.new_context(ignore_https_errors=True)
        epage = elsewhere.new_page()
        login(epage, USER, OLD_PW)
        assert epage.url.endswith("/account"), epage.url
        old_cookie = next(c["value"] for c in elsewhere.cookies() if c["name"] == webpage.COOKIE)

        # --- change the password: IMAP takes the new one at once, not the old ---
        page.goto(f"{BASE}/account/password")
        page.get_by_label("Current password").fill(OLD_PW)
        page.get_by_label("New password (at least").fill(NEW_PW)
        page.get_by_label("New password again").fill(NEW_PW)
        submit(page, "Change password")
        assert "Your password is changed." in page.content(), page.content()
        shot(page, "password-changed")
        # The change ended the other session (browser and raw client), not this one.
        epage.goto(f"{BASE}/account/password")
        assert epage.url.endswith("/account/login"), epage.url
        status, location = webpage.raw_get(BASE, "/account", old_cookie)
        assert (status, location) == (303, "/account/login"), (status, location)
        elsewhere.close()
        page.goto(f"{BASE}/account")
        assert page.url.endswith("/account"), page.url
        assert imap_login_works(USER, NEW_PW), "IMAP with the new password"
        assert not imap_login_works(USER, OLD_PW), "IMAP with the old password"

        # --- an app password: SMTP AUTH and IMAP take it until it is revoked ---
        page.goto(f"{BASE}/account/app-passwords")
        page.get_by_label("Name (the device or program it is for)").fill("phone")
        submit(page, "Create")
        secret = page.locator("p.secret").inner_text().strip()
        assert len(secret.replace(" ", "")) >= 16, secret
        shot(page, "app-password-created")
        assert smtp_login_works(USER, secret), "SMTP AUTH with the app password"
        assert imap_login_works(USER, secret.replace(" ", "")), "IMAP with the app password, spaces left out"
        page.goto(f"{BASE}/account/app-passwords")
        assert "phone" in page.content()
        submit(page, "Revoke phone")
        assert "The app password is revoked." in page.content(), page.content()
        assert not smtp_login_works(USER, secret), "SMTP AUTH with a revoked app password"

        # --- require app passwords: mail apps lose the main password, the web keeps it ---
        page.get_by_label("Mail apps (IMAP, POP3, SMTP) must use an app password").check()
        page.locator("form:has(#required)").get_by_role("button", name="Save").click()
        page.wait_for_load_state()
        assert page.locator("#required").is_checked()
        assert not imap_login_works(USER, NEW_PW), "IMAP with the main password while app passwords are required"
        page.get_by_label("Mail apps (IMAP, POP3, SMTP) must use an app password").uncheck()
        page.locator("form:has(#required)").get_by_role("button", name="Save").click()
        page.wait_for_load_state()
        assert imap_login_works(USER, NEW_PW), "IMAP with the main password once no longer required"
        again = browser.new_context(ignore_https_errors=True)
        login(again.new_page(), USER, NEW_PW)
        again.close()

        # --- the vacation reply ---
        page.goto(f"{BASE}/account/vacation")
        page.get_by_label("Reply automatically to mail while I am away").check()
        page.get_by_label("Subject").fill("Away until Monday")
        page.get_by_label("Message").fill("I am away.\nBack on Monday.")
        submit(page, "Save")
        assert "Saved." in page.content(), page.content()
        shot(page, "vacation-saved")
        host, port = hostport(SUBMISSIONS)
        with smtplib.SMTP_SSL(host, port, context=insecure_tls(), timeout=30) as s:
            s.login(OTHER, OTHER_PW)
            s.sendmail(
                OTHER,
                [USER],
                f"From: {OTHER}\r\nTo: {USER}\r\nSubject: lunch?\r\nMessage-ID: <lunch@example.com>\r\n\r\nLunch on Friday?\r\n",
            )
        reply = wait_for_reply("Away until Monday")
        body = reply.get_payload(decode=True).decode()
        assert "Back on Monday." in body, body
        browser.close()
    print("ok")


if __name__ == "__main__":
    main()
