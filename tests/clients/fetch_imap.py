"""IMAP views of a periodic fetch (`MAILROOM_FETCH`), with imaplib.

usage:
  fetch_imap.py local IMAP_PORT
      log in to mailroom as alice@example.com (IMAP with STARTTLS on loopback) and print the
      Message-ID of every INBOX message, one per line, in UID order
  fetch_imap.py watch PORT CA_FILE USER PASSWORD LOCAL_MAILDIR COUNT
      watch a remote account (Dovecot, over TLS) while mailroom fetches it without
      `keep`: every message gone from the server or flagged \\Deleted must already have
      its local copy.
      APPEND messages <w0@remote.test> .. <w{COUNT-1}@remote.test> to the remote INBOX,
      then sample until the remote INBOX is empty and every message is in LOCAL_MAILDIR
      (new/ and cur/). Each sample reads the remote first and the local Maildir second:
      local copies only grow, so a message missing or \\Deleted on the remote and absent
      locally means it was deleted before its copy existed. Prints "samples N deleted-seen
      M" (samples taken while the fetch was under way); exits 1 at the first violation,
      2 after 60 seconds without finishing."""
import imaplib
import os
import re
import ssl
import sys
import time

if sys.argv[1] == "local":
    imap = imaplib.IMAP4("127.0.0.1", int(sys.argv[2]), timeout=30)
    own = ssl.create_default_context()
    own.check_hostname = False
    own.verify_mode = ssl.CERT_NONE  # mailroom's self-signed certificate
    imap.starttls(ssl_context=own)
    imap.login("alice@example.com", "wonderland")
    typ, data = imap.select("INBOX", readonly=True)
    assert typ == "OK", data
    if int(data[0]) > 0:
        typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
        for part in data:
            if isinstance(part, tuple):
                print(re.search(rb"<[^>]+>", part[1]).group().decode())
    imap.logout()
    sys.exit(0)

port, ca, user, password, local_dir, count = sys.argv[2:8]
count = int(count)
all_ids = {f"<w{i}@remote.test>" for i in range(count)}

ctx = ssl.create_default_context(cafile=ca)
imap = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx)
imap.login(user, password)
for i in range(count):
    msg = (
        f"From: sender@remote.test\r\nTo: someone@remote.test\r\nSubject: watched {i}\r\n"
        f"Message-ID: <w{i}@remote.test>\r\n\r\nWatched body {i}.\r\n"
    )
    typ, _ = imap.append("INBOX", None, None, msg.encode())
    assert typ == "OK", typ


def remote_present():
    """Message-IDs on the server and not flagged \\Deleted, and how many are \\Deleted."""
    typ, data = imap.select("INBOX", readonly=True)
    assert typ == "OK", data
    if int(data[0]) == 0:
        return set(), 0
    typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert typ == "OK", data
    present, deleted = set(), 0
    for part in data:
        if not isinstance(part, tuple):
            continue
        meta, header = part
        found = re.search(rb"<[^>]+>", header)
        if found is None:
            continue
        if b"\\Deleted" in meta:
            deleted += 1
        else:
            present.add(found.group().decode())
    return present, deleted


def local_ids():
    ids = set()
    for sub in ("new", "cur"):
        folder = os.path.join(local_dir, sub)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            try:
                with open(os.path.join(folder, name), "rb") as f:
                    head = f.read(64 * 1024)
            except FileNotFoundError:
                continue
            found = re.search(rb"\r\nMessage-ID: (<[^>]+>)", head)
            if found:
                ids.add(found.group(1).decode())
    return ids


samples, deleted_seen = 0, 0
deadline = time.time() + 60
while True:
    present, deleted = remote_present()
    local = local_ids()
    missing = (all_ids - present) - local
    if missing:
        print(f"deleted on the server before the local copy existed: {sorted(missing)}")
        sys.exit(1)
    if present != all_ids and present:
        samples += 1
    deleted_seen += deleted
    if not present and all_ids <= local:
        break
    if time.time() > deadline:
        print(f"not finished: {len(present)} on the server, {len(all_ids & local)} local")
        sys.exit(2)
    time.sleep(0.01)
print(f"samples {samples} deleted-seen {deleted_seen}")
