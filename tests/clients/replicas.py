"""Two mailroom replicas on one PostgreSQL store, driven with smtplib, imaplib and poplib.

usage:
  replicas.py deliver SMTP_PORT SUBJECT [RECIPIENT]
      send one message to alice@example.com (or RECIPIENT) over port 25
  replicas.py fetch IMAP_PORT SUBJECT...
      log in as alice, SELECT INBOX, print each message's UID and check that every
      SUBJECT is there, in order
  replicas.py pop3-exclusive POP3_A POP3_B
      alice logs in on A; a login on B is refused with [IN-USE] while A holds the
      maildrop; after A's QUIT, B logs in (within 2 s) and lists the messages
  replicas.py idle IMAP_PORT SMTP_OTHER SUBJECT
      alice IDLEs on this replica; a message sent to the other replica must show up as
      EXISTS within 1 s; prints the delay"""
import imaplib
import poplib
import smtplib
import socket
import ssl
import sys
import time

USER, PASSWORD = "alice@example.com", "wonderland"


def tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the servers' self-signed certificates
    return ctx


def imap(port):
    m = imaplib.IMAP4("127.0.0.1", int(port), timeout=30)
    m.starttls(ssl_context=tls())
    m.login(USER, PASSWORD)
    return m


def deliver(port, subject, to=USER):
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
    s.sendmail(
        "",
        [to],
        f"From: sender@example.net\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello\r\n",
    )
    s.quit()


def fetch(port, subjects):
    m = imap(port)
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    got = [part[1].decode().strip().removeprefix("Subject: ") for part in data if isinstance(part, tuple)]
    assert got == subjects, (got, subjects)
    print("fetched", got)
    m.logout()


def pop_login(port):
    p = poplib.POP3("127.0.0.1", int(port), timeout=30)
    p.stls(context=tls())
    p.user(USER)
    p.pass_(PASSWORD)
    return p


def pop3_exclusive(port_a, port_b):
    a = pop_login(port_a)
    try:
        pop_login(port_b)
        raise AssertionError("B logged in while A holds the maildrop")
    except poplib.error_proto as e:
        assert b"[IN-USE]" in e.args[0], e
    a.quit()
    deadline = time.monotonic() + 2
    while True:
        try:
            b = pop_login(port_b)
            break
        except poplib.error_proto as e:
            if b"[IN-USE]" not in e.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    count, _ = b.stat()
    assert count >= 1, count
    b.quit()
    print("pop3 ok")


def idle(port, smtp_other, subject):
    m = imap(port)
    typ, data = m.select("INBOX")
    before = int(data[0])
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+"), "no IDLE continuation"
    start = time.monotonic()
    deliver(smtp_other, subject)
    sent = time.monotonic()
    m.sock.settimeout(5)
    while True:
        line = m.readline()
        assert line, "connection closed during IDLE"
        if line.rstrip().endswith(b"EXISTS") and int(line.split()[1]) > before:
            break
    delay = time.monotonic() - sent
    m.send(b"DONE\r\n")
    while not m.readline().startswith(tag.encode()):
        pass
    m.logout()
    print(f"idle saw the delivery {delay * 1000:.0f} ms after the other replica accepted it")
    assert delay < 1.0, delay


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "deliver":
        deliver(*args)
    elif cmd == "fetch":
        fetch(args[0], args[1:])
    elif cmd == "pop3-exclusive":
        pop3_exclusive(*args)
    elif cmd == "idle":
        idle(*args)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
