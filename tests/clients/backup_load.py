"""Mail traffic for the backup test, with Python's smtplib and imaplib.

usage:
  backup_load.py deliver SMTP_PORT PREFIX COUNT
      deliver COUNT messages <PREFIX-N@backup.test> to alice, one session; exit 0
      only once every one was accepted (250)
  backup_load.py deliver-until SMTP_PORT PREFIX STOPFILE MAX
      deliver <PREFIX-N@backup.test> until STOPFILE exists (at most MAX); prints
      "sent N" where N is how many were accepted
  backup_load.py prepare IMAP_PORT USER PASSWORD
      create Archive; flag pre-0..49 \\Flagged, give pre-50..59 the keyword $Backup,
      move pre-150..169 to Archive
  backup_load.py churn IMAP_PORT USER PASSWORD STOPFILE
      until STOPFILE exists: set \\Seen on a few messages, move a few INBOX -> Archive
      and a few back; prints "churn N" (commands done)
  backup_load.py dump IMAP_PORT USER PASSWORD
      print one JSON object: {"messages": {"folder": [[message-id, [flags]], ...], ...},
      "uidvalidity": {"folder": N, ...}}"""
import imaplib
import json
import os
import re
import smtplib
import ssl
import sys
import time

DOMAIN = "backup.test"


def message(prefix, n):
    return (
        f"From: sender@example.net\r\nTo: alice@example.com\r\n"
        f"Subject: backup {prefix} {n}\r\nMessage-ID: <{prefix}-{n}@{DOMAIN}>\r\n\r\n"
        f"body of {prefix} {n}\r\n"
    )


def smtp(port):
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=60)
    s.ehlo("client.test")
    return s


def imap(port, user, password):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    m = imaplib.IMAP4("127.0.0.1", int(port), timeout=60)
    m.starttls(ssl_context=ctx)
    m.login(user, password)
    return m


def ok(result):
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


def fetch_ids(m):
    """{uid: (message-id, [flags])} of the selected mailbox."""
    data = ok(m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
    out = {}
    meta = b""
    literal = b""

    def finish():
        if not meta:
            return
        uid = re.search(rb"UID (\d+)", meta)
        flags = re.search(rb"FLAGS \(([^)]*)\)", meta)
        mid = re.search(rb"<([^>]+)>", literal)
        assert uid and flags, meta
        out[int(uid.group(1))] = (
            mid.group(1).decode() if mid else None,
            sorted(flags.group(1).decode().split()),
        )

    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            finish()
            meta, literal = item[0], item[1]
        else:
            meta += item  # what follows the literal: ")" or " FLAGS (...))"
    finish()
    return out


def uids_of(ids, prefix, numbers):
    wanted = {f"{prefix}-{n}@{DOMAIN}" for n in numbers}
    return [str(uid) for uid, (mid, _) in ids.items() if mid in wanted]


def deliver(port, prefix, count):
    s = smtp(port)
    for n in range(int(count)):
        refused = s.sendmail("", ["alice@example.com"], message(prefix, n))
        assert not refused, refused
    s.quit()


def deliver_until(port, prefix, stopfile, most):
    s = smtp(port)
    n = 0
    while n < int(most) and not os.path.exists(stopfile):
        refused = s.sendmail("", ["alice@example.com"], message(prefix, n))
        assert not refused, refused
        n += 1
    s.quit()
    print(f"sent {n}")


def prepare(port, user, password):
    m = imap(port, user, password)
    ok(m.create("Archive"))
    ok(m.select("INBOX"))
    ids = fetch_ids(m)
    ok(m.uid("STORE", ",".join(uids_of(ids, "pre", range(0, 50))), "+FLAGS", "(\\Flagged)"))
    ok(m.uid("STORE", ",".join(uids_of(ids, "pre", range(50, 60))), "+FLAGS", "($Backup)"))
    ok(m.uid("MOVE", ",".join(uids_of(ids, "pre", range(150, 170))), "Archive"))
    m.logout()


def churn(port, user, password, stopfile):
    m = imap(port, user, password)
    done = 0
    deadline = time.time() + 300
    turn = 0
    while not os.path.exists(stopfile) and time.time() < deadline:
        turn += 1
        uids = sorted(fetch_ids(m)) if select(m, "INBOX") else []
        if uids:
            pick = uids[turn % len(uids) :][:5]
            ok(m.uid("STORE", ",".join(map(str, pick)), "+FLAGS", "(\\Seen)"))
            ok(m.uid("MOVE", ",".join(map(str, pick[:3])), "Archive"))
            done += 2
        uids = sorted(fetch_ids(m)) if select(m, "Archive") else []
        if uids:
            ok(m.uid("MOVE", ",".join(map(str, uids[(turn * 7) % len(uids) :][:2])), "INBOX"))
            done += 1
    m.logout()
    print(f"churn {done}")


def select(m, folder, readonly=False):
    """Select `folder`; returns how many messages it has."""
    return int(ok(m.select(f'"{folder}"', readonly=readonly))[0])


def dump(port, user, password):
    m = imap(port, user, password)
    messages, uidvalidity = {}, {}
    for line in ok(m.list()):
        attrs, name = re.match(r'\((.*?)\) (?:NIL|"[^"]*") (.+)$', line.decode()).groups()
        name = name.strip('"')
        if "\\Noselect" in attrs:
            continue
        count = select(m, name, True)
        uidvalidity[name] = int(m.response("UIDVALIDITY")[1][0])
        messages[name] = sorted([mid, flags] for mid, flags in fetch_ids(m).values()) if count else []
    m.logout()
    print(json.dumps({"messages": messages, "uidvalidity": uidvalidity}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"deliver": deliver, "deliver-until": deliver_until, "prepare": prepare, "churn": churn, "dump": dump}[cmd](*args)
