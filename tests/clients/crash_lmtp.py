"""The LMTP side of tests/it/crash_lmtp.rs (smtplib.LMTP over TCP).

usage: crash_lmtp.py PORT ROUND RECIPIENT...

Prints `go`, then delivers messages one after the other until the connection breaks (the
test kills the server meanwhile), each to two or three of the RECIPIENTs with the
Message-ID `<rROUND.mN@crash.test>`, every seventh one bigger than the server keeps in
memory (it goes through a spool file). Prints `sent ID` before each DATA, then one line
`ack ID RECIPIENT` per recipient that got its 250, then `cut` when the server went away.

smtplib's `data()` reads one reply; LMTP gives one per accepted recipient (RFC 2033 4.2),
so the rest are read with `getreply()`."""
import smtplib
import sys

port, rnd, recipients = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
PAD = "x" * 76 + "\r\n"


def message(n, rcpts):
    msgid = f"r{rnd}.m{n}@crash.test"
    lines = 20000 if n % 7 == 3 else 20  # about 1.5 MiB or 1.5 KiB
    text = (
        f"From: a@remote.test\r\nTo: {', '.join(rcpts)}\r\nSubject: {msgid}\r\n"
        f"Message-ID: <{msgid}>\r\n\r\n" + PAD * lines + f"end {msgid}\r\n"
    )
    return msgid, text.encode()


print("go", flush=True)
try:
    lmtp = smtplib.LMTP("127.0.0.1", port, timeout=60)
    lmtp.ehlo("client.test")
    n = 0
    while True:
        rcpts = [recipients[(n + i) % len(recipients)] for i in range(2 + n % 2)]
        msgid, text = message(n, rcpts)
        code, reply = lmtp.mail("a@remote.test")
        assert code == 250, (code, reply)
        for r in rcpts:
            code, reply = lmtp.rcpt(r)
            assert code == 250, (code, reply)
        print(f"sent {msgid}", flush=True)
        replies = [lmtp.data(text)]
        replies += [lmtp.getreply() for _ in rcpts[1:]]
        for r, (code, reply) in zip(rcpts, replies):
            assert code in (250, 451, 452), (r, code, reply)
            if code == 250:
                print(f"ack {msgid} {r}", flush=True)
        n += 1
except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError):
    print("cut", flush=True)
