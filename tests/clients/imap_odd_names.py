"""A mailbox name that is not modified UTF-7, sent by imaplib (RFC 3501 6.3.1, 7.1): every
command naming it is answered NO, well past the server's limit of consecutive invalid
commands, and the same characters as a LIST pattern get an OK, not a disconnect. Then a
new keyword: imaplib records the untagged FLAGS that announces it before the FETCH.

usage: imap_odd_names.py IMAP_PORT USER PASSWORD
Exits 0 when all of that holds."""
import imaplib
import ssl
import sys

port, user, password = sys.argv[1:4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
imap = imaplib.IMAP4("127.0.0.1", int(port), timeout=60)
imap.starttls(ssl_context=ctx)
imap.login(user, password)
name = "!#$&'+,-.0123456789:;<=>?@^_`|[}"
for _ in range(25):
    for cmd in (lambda: imap.select(name), lambda: imap.create(name), lambda: imap.status(name, "(MESSAGES)")):
        try:
            typ, data = cmd()
        except imaplib.IMAP4.error as e:
            raise SystemExit(f"BAD for a valid command: {e}")
        assert typ == "NO" and b"[CANNOT]" in data[0], (typ, data)
typ, data = imap.list('""', name + "%*")
assert typ == "OK" and data == [None], (typ, data)
typ, data = imap.lsub('""', name + "%*")
assert typ == "OK", (typ, data)
typ, data = imap.append("INBOX", None, None, b"Subject: hi\r\n\r\nbody\r\n")
assert typ == "OK", (typ, data)
typ, data = imap.select("INBOX")
assert typ == "OK", (typ, data)
typ, data = imap.store("1", "+FLAGS", "($keyword1)")
assert typ == "OK" and b"$keyword1" in data[0], (typ, data)
flags = imap.untagged_responses.get("FLAGS", [])
assert flags and b"$keyword1" in flags[-1], imap.untagged_responses
try:
    imap.store("1", "+FLAGS", "(NIL)")
    raise SystemExit("NIL was accepted as a keyword")
except imaplib.IMAP4.error as e:
    assert "BAD" in str(e) or "NIL" in str(e), e
typ, data = imap.fetch("1", "(FLAGS)")
assert typ == "OK" and b"NIL" not in data[0], (typ, data)
imap.logout()
