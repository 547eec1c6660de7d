"""Phase `fill`: APPEND small messages to INBOX. Phase `flood`: set the most keywords a
mailbox admits (of the longest admitted length) on all of them, and SELECT it from several
sessions at once.

usage: imap_keyword_flood.py IMAP_PORT USER PASSWORD fill MESSAGES
       imap_keyword_flood.py IMAP_PORT USER PASSWORD flood MESSAGES KEYWORDS KEYWORD_LEN SESSIONS
Exits 0 when the server took it all and refused one keyword more with NO [LIMIT]."""
import imaplib
import re
import ssl
import sys

port, user, password = sys.argv[1:4]
phase = sys.argv[4]
messages = int(sys.argv[5])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate


def connect():
    imap = imaplib.IMAP4("127.0.0.1", int(port), timeout=300)
    imap.starttls(ssl_context=ctx)
    imap.login(user, password)
    return imap


imap = connect()
if phase == "fill":
    for n in range(messages):
        typ, data = imap.append("INBOX", None, None, f"Subject: {n}\r\n\r\nbody\r\n".encode())
        assert typ == "OK", (typ, data)
    sys.exit(0)
keywords, length, sessions = map(int, sys.argv[6:9])
imap.select("INBOX")
names = " ".join(f"k{i:03d}".ljust(length, "x") for i in range(keywords))
typ, data = imap.store("1:*", "+FLAGS.SILENT", f"({names})")
assert typ == "OK", (typ, data)
typ, data = imap.store("1", "+FLAGS.SILENT", "(onemore)")
assert typ == "NO" and b"[LIMIT]" in data[0], f"one keyword over the limit: {typ} {data}"
readers = [connect() for _ in range(sessions)]
for r in readers:
    typ, data = r.select("INBOX")
    assert typ == "OK" and int(data[0]) == messages, (typ, data)
typ, data = readers[0].fetch(str(messages), "(FLAGS)")
assert len(re.findall(rb"k\d{3}x", data[0])) == keywords, data
