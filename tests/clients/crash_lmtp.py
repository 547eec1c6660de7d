"""The LMTP side of tests/it/crash_lmtp.rs (smtplib.LMTP over TCP).

usage: crash_lmtp.py PORT ROUND STOP RECIPIENT...

Prints `go`, then delivers messages one after the other, each to two or three of the
RECIPIENTs with the Message-ID `<rROUND.mN@crash.test>`, every seventh one bigger than the
server keeps in memory (it goes through a spool file). Prints `sent ID` before each DATA,
then one line `ack ID RECIPIENT` per recipient that got its 250, and `defer CODE` for each
4xx reply.

STOP `-`: it stops when the connection breaks (the test kills the server meanwhile) and
prints `cut`. Otherwise it is a file name: like an MTA it carries on through temporary
failures (4xx, a dropped connection: the next message, on a new connection if need be)
until that file exists, then prints `stopped`.

smtplib's `data()` reads one reply; LMTP gives one per accepted recipient (RFC 2033 4.2),
so the rest are read with `getreply()`."""
import os
import smtplib
import sys
import time

port, rnd, stop, recipients = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
PAD = "x" * 76 + "\r\n"


def message(n, rcpts):
    msgid = f"r{rnd}.m{n}@crash.test"
    lines = 20000 if n % 7 == 3 else 20  # about 1.5 MiB or 1.5 KiB
    text = (
        f"From: a@remote.test\r\nTo: {', '.join(rcpts)}\r\nSubject: {msgid}\r\n"
        f"Message-ID: <{msgid}>\r\n\r\n" + PAD * lines + f"end {msgid}\r\n"
    )
    return msgid, text.encode()


def transaction(lmtp, n):
    """One message; False when the server refused it for now (4xx before DATA)."""
    rcpts = [recipients[(n + i) % len(recipients)] for i in range(2 + n % 2)]
    msgid, text = message(n, rcpts)
    code, reply = lmtp.mail("a@remote.test")
    if code != 250:
        assert 400 <= code < 500, (code, reply)
        print(f"defer {code}", flush=True)
        lmtp.rset()
        return False
    accepted = []
    for r in rcpts:
        code, reply = lmtp.rcpt(r)
        assert code == 250 or 400 <= code < 500, (r, code, reply)
        if code == 250:
            accepted.append(r)
        else:
            print(f"defer {code}", flush=True)
    if not accepted:
        lmtp.rset()
        return False
    print(f"sent {msgid}", flush=True)
    replies = [lmtp.data(text)]
    replies += [lmtp.getreply() for _ in accepted[1:]]
    for r, (code, reply) in zip(accepted, replies):
        assert code == 250 or 400 <= code < 500, (r, code, reply)
        if code == 250:
            print(f"ack {msgid} {r}", flush=True)
        else:
            print(f"defer {code}", flush=True)
    return True


print("go", flush=True)
n = 0
while stop == "-" or not os.path.exists(stop):
    try:
        lmtp = smtplib.LMTP("127.0.0.1", port, timeout=60)
        lmtp.ehlo("client.test")
        while stop == "-" or not os.path.exists(stop):
            if transaction(lmtp, n):
                n += 1
            else:
                time.sleep(0.05)  # an MTA's retry delay, shortened
        lmtp.quit()
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as e:
        if stop == "-":
            print("cut", flush=True)
            sys.exit(0)
        print(f"defer {e.__class__.__name__}", flush=True)
        n += 1  # the message cut with the connection is not sent again
        time.sleep(0.05)
print("stopped", flush=True)
