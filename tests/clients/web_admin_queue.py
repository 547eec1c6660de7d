#!/usr/bin/env python3
"""The admin page's queue buttons, clicked in a real browser (Debian's chromium driven by
playwright), each outcome checked against `mailroom status` too.

Usage: web_admin_queue.py BASE_URL ADMIN PASSWORD SMTP_HOST:PORT STATUS_COMMAND SCREENSHOT_DIR

The server relays through a smarthost on a loopback port where nothing listens, so a
message sent through SMTP_HOST:PORT (a trusted network) stays in the queue, deferred.
STATUS_COMMAND runs `mailroom status` for this server. Sends one message, waits for it on
the admin page, then hold (the page and the status say `hold`), release, retry and delete
(gone from both). Prints "ok" at the end; any failed check raises.
"""

import functools
import json
import smtplib
import subprocess
import sys
import time

from playwright.sync_api import sync_playwright

import webpage

BASE, ADMIN, ADMIN_PW, SMTP, STATUS, SHOTS = sys.argv[1:7]
shot = functools.partial(webpage.shot, SHOTS)
RECIPIENT = "erin@remote.test"


def queue_items():
    out = subprocess.run([STATUS], capture_output=True, check=True, timeout=30)
    return json.loads(out.stdout)["queue"]["items"]


def wait_for(what, condition, timeout=30):
    """Poll `condition` until it returns something true; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def click(page, name):
    with page.expect_navigation():
        page.get_by_role("button", name=name, exact=True).click()


def main():
    host, port = SMTP.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=30) as smtp:
        smtp.sendmail("app@example.com", [RECIPIENT],
                      f"From: app@example.com\r\nTo: {RECIPIENT}\r\nSubject: queue buttons\r\n\r\nhello\r\n")
    # Its first attempt fails at once (nothing listens at the smarthost): deferred.
    item = wait_for("the deferred queue item", lambda: next(
        (i for i in queue_items() if i["recipients"][0]["address"] == RECIPIENT and i["state"] == "deferred"), None))
    qid = item["id"]
    print(f"queue item {qid}")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844})
        page = ctx.new_page()
        webpage.login(BASE, page, ADMIN, ADMIN_PW)
        page.goto(f"{BASE}/admin#queue")
        block = page.locator("div.check", has_text=RECIPIENT)
        assert block.count() == 1, page.content()
        assert qid in block.inner_text(), block.inner_text()
        shot(page, "admin-queue")

        click(page, f"Hold {qid}")
        assert f"Hold {qid}: done." in page.content(), page.content()
        assert " · hold · " in page.locator("div.check", has_text=RECIPIENT).inner_text()
        wait_for("hold in the status", lambda: [i["state"] for i in queue_items() if i["id"] == qid] == ["hold"])
        shot(page, "admin-queue-held")

        # Released items are due now: one more attempt, deferred again.
        click(page, f"Release {qid}")
        assert f"Release {qid}: done." in page.content(), page.content()
        item = wait_for("the attempt after the release", lambda: next(
            (i for i in queue_items() if i["id"] == qid and i["state"] == "deferred" and i["attempts"] > item["attempts"]), None))

        click(page, f"Retry {qid}")
        assert f"Retry {qid}: done." in page.content(), page.content()
        wait_for("the retried attempt", lambda: any(
            i["id"] == qid and i["state"] == "deferred" and i["attempts"] > item["attempts"] for i in queue_items()))

        click(page, f"Delete {qid}")
        assert f"Delete {qid}: done." in page.content(), page.content()
        assert page.locator("div.check", has_text=RECIPIENT).count() == 0, page.content()
        assert "The queue is empty." in page.content(), page.content()
        assert not any(i["id"] == qid for i in queue_items())
        shot(page, "admin-queue-deleted")
        browser.close()
    print("ok")


if __name__ == "__main__":
    main()
