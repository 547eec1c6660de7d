"""The IMAP side of tests/it/crash_imap.rs (imaplib over STARTTLS).

usage: crash_imap.py PORT USER PASSWORD prepare OP   bring the folders to the state OP starts from
       crash_imap.py PORT USER PASSWORD run OP       print `go`, then run OP (the test kills the
                                                     server meanwhile); `done` if it finished
       crash_imap.py PORT USER PASSWORD append N [TAG]  APPEND N messages to INBOX, Message-IDs
                                                     [TAG.]m0@crash.test... (a store without a Maildir)
       crash_imap.py PORT USER PASSWORD state        JSON: per folder UIDVALIDITY, UIDNEXT and
                                                     [uid, Message-ID, flags] of every message

Folders: INBOX holds the messages; OP `move` moves them all to Archive, `copy` copies them
to Copies, `expunge` expunges Copies (all \\Deleted), `store` changes flags on all of INBOX
(the index log grows until it is rewritten), `hdrcache` reads the headers of Copies, whose header
cache holds mostly expunged messages (it is rewritten when it is opened for that)."""
import imaplib
import json
import re
import socket
import ssl
import sys

port, user, password, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
FOLDERS = ["INBOX", "Archive", "Copies"]


def connect():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    # imaplib writes an APPEND literal and its closing CRLF apart: with Nagle on, the CRLF
    # waits for the server's delayed ACK of the literal (40 ms per APPEND).
    imap.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    imap.starttls(ssl_context=ctx)
    imap.login(user, password)
    return imap


def ok(result):
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


def select(imap, folder):
    return int(ok(imap.select(folder))[0])


def empty(imap, folder):
    if select(imap, folder):
        ok(imap.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)"))
        ok(imap.expunge())


imap = connect()
if mode == "prepare":
    op = sys.argv[5]
    for folder in FOLDERS[1:]:
        imap.create(folder)  # NO [ALREADYEXISTS] after the first round
    # Whatever an interrupted MOVE left in Archive goes back; Copies starts empty.
    if select(imap, "Archive"):
        ok(imap.uid("MOVE", "1:*", "INBOX"))
    empty(imap, "Copies")
    if op in ("expunge", "hdrcache"):
        select(imap, "INBOX")
        ok(imap.uid("COPY", "1:*", "Copies"))
        select(imap, "Copies")
        # Fills the header cache of Copies (then dead records once expunged).
        ok(imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER])"))
        ok(imap.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)"))
        if op == "hdrcache":
            # Dead records only, plus a few live ones not cached yet: the next open of
            # the cache (at the next header read) rewrites it.
            ok(imap.expunge())
            select(imap, "INBOX")
            ok(imap.uid("COPY", "1:10", "Copies"))
    imap.logout()
elif mode == "run":
    op = sys.argv[5]
    select(imap, "Copies" if op in ("expunge", "hdrcache") else "INBOX")
    print("go", flush=True)
    try:
        if op == "move":
            imap.uid("MOVE", "1:*", "Archive")
        elif op == "copy":
            imap.uid("COPY", "1:*", "Copies")
        elif op == "expunge":
            imap.expunge()
        elif op == "store":
            for _ in range(4):
                imap.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Flagged)")
                imap.uid("STORE", "1:*", "-FLAGS.SILENT", "(\\Flagged)")
        elif op == "hdrcache":
            imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER])")
        print("done", flush=True)
    except (imaplib.IMAP4.abort, OSError, EOFError):
        print("cut", flush=True)
elif mode == "append":
    tag = sys.argv[6] + "." if len(sys.argv) > 6 else ""
    for i in range(int(sys.argv[5])):
        msgid = f"{tag}m{i}@crash.test"
        text = f"From: a@remote.test\r\nTo: {user}\r\nSubject: {msgid}\r\nMessage-ID: <{msgid}>\r\n\r\nbody {i}\r\n"
        ok(imap.append("INBOX", None, None, text.encode()))
    imap.logout()
elif mode == "state":
    out = {}
    for folder in FOLDERS:
        typ, _ = imap.select(folder)
        if typ != "OK":
            continue
        validity = int(imap.response("UIDVALIDITY")[1][0])
        uidnext = int(imap.response("UIDNEXT")[1][0])
        messages = []
        typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, header = item[0].decode(), item[1].decode()
            uid = int(re.search(r"UID (\d+)", meta).group(1))
            flags = re.search(r"FLAGS \(([^)]*)\)", meta)
            msgid = re.search(r"<([^>]+)>", header)
            messages.append([uid, msgid.group(1) if msgid else "", flags.group(1) if flags else ""])
        out[folder] = {"uidvalidity": validity, "uidnext": uidnext, "messages": messages}
    print(json.dumps(out))
    imap.logout()
