"""The two sides of `mailroom import` seen by imaplib (tests/it/import.rs).

fill HOST PORT USER PASSWORD CAFILE
    Make a folder tree on the remote server (Dovecot, '.' delimiter) and APPEND messages
    with flags, keywords and distinct internal dates.
list HOST PORT USER PASSWORD CAFILE|-
    Print JSON {folder path with '/': [[flags, internaldate epoch, size, sha256], ...]}
    for every selectable folder, messages sorted; '-' accepts any certificate (our own
    server's self-signed one).
"""

import hashlib
import imaplib
import json
import re
import ssl
import sys
from datetime import datetime, timezone

TREE = {
    "INBOX": [(r"\Seen", "01-Jan-2020 10:00:00 +0100"), ("", "02-Jan-2020 11:00:00 +0000")],
    "Sent Messages": [(r"\Seen \Answered", "03-Feb-2021 12:30:00 -0500")],
    "Work": [(r"\Flagged $Forwarded", "04-Mar-2022 08:00:00 +0000"), ("project-x", "05-Mar-2022 09:00:00 +0000")],
    "Work.2024": [(r"\Seen \Flagged \Answered $Forwarded project-x", "06-Apr-2024 23:59:59 +0200")],
    "Work.2024.Q1": [("", "07-Jan-2024 00:00:01 +0000"), (r"\Seen", "07-Jan-2024 00:00:01 +0000")],
}


def connect(host, port, user, password, cafile):
    if cafile == "-":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
    imap = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
    imap.login(user, password)
    return imap


def message(folder, i, flags):
    body = f"Line of {folder} {i}\r\n" * (i + 1)
    return (
        f"From: someone@remote.test\r\nTo: me@remote.test\r\nSubject: {folder} {i} {flags}\r\n"
        f"Message-ID: <{folder.replace(' ', '-')}.{i}@remote.test>\r\n\r\n{body}"
    ).encode()


def fill(imap):
    for folder, messages in TREE.items():
        if folder != "INBOX":
            typ, data = imap.create(f'"{folder}"')
            assert typ == "OK", data
        for i, (flags, date) in enumerate(messages):
            typ, data = imap.append(f'"{folder}"', f"({flags})", f'"{date}"', message(folder, i, flags))
            assert typ == "OK", data


LIST = re.compile(rb'\((?P<attrs>[^)]*)\) (?:"(?P<delim>\\?.)"|NIL) (?P<name>.*)$')
FETCH = re.compile(rb'FLAGS \((?P<flags>[^)]*)\).*INTERNALDATE "(?P<date>[^"]+)".*RFC822\.SIZE (?P<size>\d+)')


def listing(imap):
    out = {}
    typ, lines = imap.list()
    assert typ == "OK", lines
    for line in lines:
        m = LIST.match(line)
        assert m, line
        if rb"\Noselect" in m["attrs"] or rb"\NonExistent" in m["attrs"]:
            continue
        name = m["name"].decode()
        if name.startswith('"'):
            name = name[1:-1]
        delim = m["delim"].decode()[-1] if m["delim"] else None
        path = name.replace(delim, "/") if delim else name
        typ, data = imap.select(f'"{name}"', readonly=True)
        assert typ == "OK", data
        messages = []
        if int(data[0]) > 0:
            typ, data = imap.fetch("1:*", "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
            assert typ == "OK", data
            for item in data:
                if not isinstance(item, tuple):
                    continue
                meta, body = item
                f = FETCH.search(meta)
                assert f, meta
                flags = sorted(x for x in f["flags"].decode().split() if x != r"\Recent")
                date = datetime.strptime(f["date"].decode(), "%d-%b-%Y %H:%M:%S %z").astimezone(timezone.utc)
                messages.append([flags, int(date.timestamp()), int(f["size"]), hashlib.sha256(body).hexdigest()])
        out[path] = sorted(messages)
    return out


def main():
    mode, host, port, user, password, cafile = sys.argv[1:7]
    imap = connect(host, port, user, password, cafile)
    if mode == "fill":
        fill(imap)
    else:
        print(json.dumps(listing(imap), sort_keys=True))
    imap.logout()


main()
