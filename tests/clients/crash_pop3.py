"""The POP3 side of tests/it/crash_pop3.rs (poplib over STLS).

usage: crash_pop3.py PORT USER PASSWORD dele-quit   UIDL, DELE two messages in three, print
                                                    `quit` and send QUIT
       crash_pop3.py PORT USER PASSWORD retr-dele   print `go`, then RETR and DELE every
                                                    message, then QUIT (a download-and-delete
                                                    client)
       crash_pop3.py PORT USER PASSWORD state       JSON: [UIDL, Message-ID] of every message

While it runs the test kills the server. The runs print `dele UIDL` after each +OK to DELE,
`quitok` after the +OK to QUIT, and `cut` when the server went away first."""
import json
import poplib
import re
import ssl
import sys

port, user, password, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


def connect():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    pop = poplib.POP3("127.0.0.1", port, timeout=60)
    pop.stls(context=ctx)
    pop.user(user)
    pop.pass_(password)
    return pop


def uidls(pop):
    """{message number: UIDL}"""
    _, lines, _ = pop.uidl()
    return dict((int(n), u) for n, u in (line.decode().split() for line in lines))


if mode == "state":
    pop = connect()
    out = []
    for n, uidl in sorted(uidls(pop).items()):
        _, lines, _ = pop.top(n, 0)
        header = b"\n".join(lines).decode()
        msgid = re.search(r"^Message-ID: <([^>]+)>", header, re.M | re.I)
        out.append([uidl, msgid.group(1) if msgid else ""])
    pop.quit()
    print(json.dumps(out))
    sys.exit(0)

try:
    pop = connect()
    listed = uidls(pop)
    if mode == "retr-dele":
        print("go", flush=True)
    for n, uidl in sorted(listed.items()):
        if mode == "retr-dele":
            pop.retr(n)
        elif n % 3 == 0:
            continue
        pop.dele(n)
        print(f"dele {uidl}", flush=True)
    print("quit", flush=True)
    pop.quit()
    print("quitok", flush=True)
except (poplib.error_proto, OSError, EOFError):
    print("cut", flush=True)
