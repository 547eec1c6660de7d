"""What the browser scripts share (web_browser.py, web_account.py): logging in through
the form, screenshots, and a TLS context for the server's self-signed certificate."""

import ssl


def insecure_tls():
    """The test server's certificate is self-signed: no verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def shot(shots, page, name):
    path = f"{shots}/{name}.png"
    page.screenshot(path=path, full_page=True)
    print(f"screenshot {path}")


def login(base, page, address, password):
    page.goto(f"{base}/account/login")
    page.get_by_label("Mail address").fill(address)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
