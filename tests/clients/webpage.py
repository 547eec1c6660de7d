"""What the browser scripts share (web_browser.py, web_account.py): logging in through
the form, screenshots, and a TLS context for the server's self-signed certificate."""

import http.client
import ssl
import urllib.parse

COOKIE = "__Host-mailroom"


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


def raw_get(base, path, cookie):
    """A GET with our session cookie and no browser: status and Location."""
    conn = http.client.HTTPSConnection(urllib.parse.urlsplit(base).netloc, context=insecure_tls(), timeout=30)
    conn.request("GET", path, headers={"Cookie": f"{COOKIE}={cookie}"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader("Location")


# Run in the page: every visible form control has a label (or an aria-label), every
# button a name, nothing is wider than the viewport. Returns the problems found.
A11Y_CHECK = """() => {
  const problems = [];
  for (const el of document.querySelectorAll("input, textarea, select")) {
    if (el.type === "hidden") continue;
    const named = (el.labels && el.labels.length) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!named) problems.push("no label: " + el.outerHTML);
  }
  for (const b of document.querySelectorAll("button")) {
    if (!(b.textContent.trim() || b.getAttribute("aria-label"))) problems.push("no name: " + b.outerHTML);
  }
  if (document.documentElement.scrollWidth > window.innerWidth) {
    const wide = [...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > window.innerWidth);
    problems.push("wider than the viewport: " + document.documentElement.scrollWidth + " > " + window.innerWidth + ": " +
                  wide.slice(-3).map(e => e.tagName + " " + e.textContent.slice(0, 60)).join(" | "));
  }
  return problems;
}"""


def check_accessible(page):
    """A11Y_CHECK on the page, then the keyboard: Tab reaches a control that shows a ring."""
    problems = page.evaluate(A11Y_CHECK)
    assert not problems, f"{page.url}: {problems}"
    page.keyboard.press("Tab")
    ring = page.evaluate("""() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const s = getComputedStyle(el);
      return [el.tagName, s.outlineStyle, parseFloat(s.outlineWidth)];
    }""")
    assert ring and ring[1] != "none" and ring[2] >= 2, f"{page.url}: focus ring {ring}"
