"""Send one message over SMTP (STARTTLS) and read it back over IMAP (STARTTLS),
with Python's own smtplib and imaplib: clients mailroom did not write.

usage: mail_roundtrip.py SMTP_PORT IMAP_PORT USER PASSWORD MARKER
Exits 0 when the message came back with its body intact."""
import imaplib
import smtplib
import ssl
import sys
import time
from email.message import EmailMessage

smtp_port, imap_port, user, password, marker = sys.argv[1:6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate

domain = user.split("@", 1)[1]
msg = EmailMessage()
msg["From"] = f"sender@{domain}"
msg["To"] = user
msg["Subject"] = f"roundtrip {marker}"
msg.set_content(f"body line one\n.leading dot line\n{marker}\n")

with smtplib.SMTP("127.0.0.1", int(smtp_port), timeout=30) as s:
    s.ehlo("client.test")
    s.starttls(context=ctx)
    s.ehlo("client.test")
    refused = s.send_message(msg)
    assert not refused, refused

imap = imaplib.IMAP4("127.0.0.1", int(imap_port), timeout=30)
imap.starttls(ssl_context=ctx)
imap.login(user, password)
deadline = time.time() + 20
found = []
while time.time() < deadline:
    imap.select("INBOX")
    typ, data = imap.search(None, "SUBJECT", f'"roundtrip {marker}"')
    found = data[0].split()
    if found:
        break
    time.sleep(0.2)
assert found, "message not found over IMAP"
typ, data = imap.fetch(found[-1], "(BODY.PEEK[])")
raw = data[0][1]
assert marker.encode() in raw, raw
assert b"\r\n..leading dot line" not in raw and b"\r\n.leading dot line\r\n" in raw, raw
assert b"Received: from" in raw and b"Return-Path: <sender@" in raw, raw[:400]
imap.logout()
print("roundtrip ok")
