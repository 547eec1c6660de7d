"""Two mailroom replicas on one PostgreSQL store, driven with smtplib, imaplib and poplib.

usage:
  replicas.py deliver SMTP_PORT SUBJECT [RECIPIENT]
      send one message to alice@example.com (or RECIPIENT) over port 25
  replicas.py submit SUBMISSION_PORT MESSAGE_ID RECIPIENT...
      alice submits one message with that Message-ID to the RECIPIENTs (STARTTLS, AUTH
      PLAIN); returns once the server answered 250
  replicas.py fetch IMAP_PORT SUBJECT...
      log in as alice, SELECT INBOX, print each message's UID and check that every
      SUBJECT is there, in order
  replicas.py pop3-exclusive POP3_A POP3_B
      alice logs in on A; a login on B is refused with [IN-USE] while A holds the
      maildrop; after A's QUIT, B logs in (within 2 s) and lists the messages
  replicas.py idle IMAP_PORT SMTP_OTHER SUBJECT
      alice IDLEs on this replica; a message sent to the other replica must show up as
      EXISTS within 1 s; prints the delay
  replicas.py load SMTP_PORT SECONDS OUTFILE [STOPFILE]
      four sessions send messages with unique subjects for SECONDS, or until STOPFILE
      exists (reconnecting after errors); every subject answered 250 is appended to
      OUTFILE (flushed at once); prints how many were accepted, refused with 4xx, and cut
      off
  replicas.py verify IMAP_PORT OUTFILE
      every subject in OUTFILE is in INBOX exactly once; prints the counts
  replicas.py unavailable IMAP_PORT SMTP_PORT
      with the database down: SMTP DATA gets a 4xx and IMAP SELECT (or LOGIN) a NO
      [UNAVAILABLE]; nothing is disconnected without an answer"""
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


def submit(port, msgid, rcpts):
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
    s.starttls(context=tls())
    s.login(USER, PASSWORD)
    s.sendmail(
        USER,
        rcpts,
        f"From: {USER}\r\nTo: {', '.join(rcpts)}\r\nSubject: queued\r\nMessage-ID: {msgid}\r\n\r\nhello\r\n",
    )
    s.quit()
    print("submitted", msgid)


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


def load(port, seconds, outfile, stopfile=None):
    import os
    import threading

    deadline = time.monotonic() + float(seconds)

    def going():
        return time.monotonic() < deadline and not (stopfile and os.path.exists(stopfile))

    lock = threading.Lock()
    counts = {"accepted": 0, "temporary": 0, "cut": 0}
    out = open(outfile, "a")

    def worker(n):
        i = 0
        s = None
        while going():
            subject = f"load-{n}-{i}"
            i += 1
            try:
                if s is None:
                    s = smtplib.SMTP("127.0.0.1", int(port), timeout=10)
                s.sendmail("", [USER], f"From: sender@example.net\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\nx\r\n")
                with lock:
                    out.write(subject + "\n")
                    out.flush()
                    counts["accepted"] += 1
            except smtplib.SMTPResponseException as e:
                with lock:
                    counts["temporary" if 400 <= e.smtp_code < 500 else "cut"] += 1
                assert 400 <= e.smtp_code < 500, e
                try:
                    s.rset()
                except Exception:
                    s = None
                time.sleep(0.05)
            except (OSError, smtplib.SMTPException):
                with lock:
                    counts["cut"] += 1
                s = None
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(counts)


def verify(port, outfile):
    want = [line.strip() for line in open(outfile) if line.strip()]
    m = imap(port)
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    got = [part[1].decode().strip().removeprefix("Subject: ") for part in data if isinstance(part, tuple)]
    missing = set(want) - set(got)
    dups = {s for s in got if got.count(s) > 1}
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]} ({len(missing)})"
    assert not dups, f"stored twice: {sorted(dups)[:10]}"
    print(f"{len(want)} acknowledged, all present once; {len(got)} in INBOX")


def unavailable(imap_port, smtp_port):
    s = smtplib.SMTP("127.0.0.1", int(smtp_port), timeout=30)
    try:
        s.sendmail("", [USER], f"From: sender@example.net\r\nTo: {USER}\r\nSubject: during\r\n\r\nx\r\n")
        raise AssertionError("accepted while the database is down")
    except smtplib.SMTPResponseException as e:
        assert 400 <= e.smtp_code < 500, e
        print("smtp:", e.smtp_code, e.smtp_error)
    except smtplib.SMTPRecipientsRefused as e:
        code = list(e.recipients.values())[0][0]
        assert 400 <= code < 500, e
        print("smtp rcpt:", e.recipients)
    s.quit()
    m = imaplib.IMAP4("127.0.0.1", int(imap_port), timeout=30)
    m.starttls(ssl_context=tls())
    try:
        m.login(USER, PASSWORD)
        typ, data = m.select("INBOX")
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0], (typ, data)
        print("imap select:", data)
    except imaplib.IMAP4.error as e:
        assert "[UNAVAILABLE]" in str(e), e
        print("imap login:", e)
    m.logout()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "deliver":
        deliver(*args)
    elif cmd == "submit":
        submit(args[0], args[1], args[2:])
    elif cmd == "fetch":
        fetch(args[0], args[1:])
    elif cmd == "pop3-exclusive":
        pop3_exclusive(*args)
    elif cmd == "idle":
        idle(*args)
    elif cmd == "load":
        load(*args)
    elif cmd == "verify":
        verify(*args)
    elif cmd == "unavailable":
        unavailable(*args)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
