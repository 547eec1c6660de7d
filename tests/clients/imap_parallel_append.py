"""APPEND one big message from each of several parallel imaplib clients (STARTTLS).

usage: imap_parallel_append.py IMAP_PORT USER PASSWORD CLIENTS MIB
Exits 0 when every APPEND got OK and the mailbox then holds CLIENTS messages of the
right size."""
import imaplib
import ssl
import sys
import threading

port, user, password, clients, mib = sys.argv[1:6]
clients, size = int(clients), int(mib) * 1024 * 1024
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate

line = b"x" * 998 + b"\r\n"
body = b"Subject: big append\r\n\r\n" + line * (size // len(line))
errors = []


def upload(n):
    try:
        imap = imaplib.IMAP4("127.0.0.1", int(port), timeout=120)
        imap.starttls(ssl_context=ctx)
        imap.login(user, password)
        typ, data = imap.append("INBOX", None, None, body)
        assert typ == "OK", (typ, data)
        imap.logout()
    except Exception as e:  # reported below, the exit status fails the test
        errors.append(f"client {n}: {e!r}")


threads = [threading.Thread(target=upload, args=(n,)) for n in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    sys.exit("\n".join(errors))

imap = imaplib.IMAP4("127.0.0.1", int(port), timeout=60)
imap.starttls(ssl_context=ctx)
imap.login(user, password)
typ, data = imap.select("INBOX")
assert int(data[0]) == clients, data
typ, data = imap.fetch("1:*", "(RFC822.SIZE)")
sizes = [int(d.split(b"RFC822.SIZE ")[1].rstrip(b")")) for d in data]
assert sizes == [len(body)] * clients, sizes
imap.logout()
