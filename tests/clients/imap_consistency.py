"""Many IMAP sessions on one shared mailbox at once, each checking what the server tells it.

usage: imap_consistency.py PORT USER PASSWORD CLIENTS OPS [SEED]

CLIENTS sessions (implicit TLS, the same account, so they share INBOX) each run OPS
random commands: APPEND (with keywords), FETCH and UID FETCH of FLAGS, STORE of flags and
keywords, STORE \\Deleted + EXPUNGE, UID EXPUNGE, COPY, MOVE, SEARCH, NOOP, and now and
then a new SELECT. Every session keeps its own model of the mailbox (UID by sequence
number, the keywords announced in FLAGS) from the untagged responses and checks, like
Dovecot's imaptest does, that the server never contradicts it:

- every command ends in a tagged OK (a NO or BAD is a failed command: an RFC 2180 server
  keeps an expunged message fetchable for the sessions that still see it);
- EXISTS never shrinks without EXPUNGE; EXPUNGE and FETCH name a sequence number the
  session sees; a FETCH's UID matches the one the session knows for that number, and the
  UIDs stay strictly ascending;
- a keyword in a FETCH's FLAGS was announced in a FLAGS response first (RFC 3501 7.2.6);
- at the end, with every session idle, a NOOP brings each session's view to exactly the
  mailbox a new session sees.

Prints one JSON object (sessions, commands, failures by kind with the first examples)
and exits 1 on any failure.
"""

import asyncio
import json
import random
import re
import ssl
import sys

SYSTEM = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent"}
KEYWORDS = ["$Label%d" % i for i in range(12)] + ["$Forwarded", "Junk", "NonJunk"]
OTHER = "Consistency"

FETCH_RE = re.compile(rb"^\* (\d+) FETCH \((.*)\)$", re.S)
UID_RE = re.compile(rb"UID (\d+)")
FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")


class Failures:
    def __init__(self):
        self.kinds = {}
        self.examples = []

    def add(self, kind, detail):
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if len(self.examples) < 20:
            self.examples.append("%s: %s" % (kind, detail))


class Session:
    def __init__(self, n, reader, writer, failures, rng):
        self.n, self.r, self.w, self.f, self.rng = n, reader, writer, failures, rng
        self.tag = 0
        self.uids = []  # UID by sequence number - 1; None until the server names it
        self.announced = set()
        self.commands = 0

    async def line(self):
        """One response line with any literals folded in (their bytes kept)."""
        out = b""
        while True:
            part = await self.r.readline()
            if not part:
                raise ConnectionError("server closed the connection")
            out += part
            m = re.search(rb"\{(\d+)\}\r\n$", part)
            if not m:
                return out.rstrip(b"\r\n")
            out += await self.r.readexactly(int(m.group(1)))

    def untagged(self, resp):
        if resp.startswith(b"* FLAGS ("):
            self.announced = set(resp[9:resp.rindex(b")")].decode().split())
            return
        m = re.match(rb"^\* (\d+) (EXISTS|EXPUNGE)$", resp)
        if m:
            n = int(m.group(1))
            if m.group(2) == b"EXISTS":
                if n < len(self.uids):
                    self.f.add("exists_shrank", "session %d: EXISTS %d < %d" % (self.n, n, len(self.uids)))
                    del self.uids[n:]
                self.uids.extend([None] * (n - len(self.uids)))
            else:
                if not 1 <= n <= len(self.uids):
                    self.f.add("expunge_out_of_range", "session %d: EXPUNGE %d of %d" % (self.n, n, len(self.uids)))
                else:
                    del self.uids[n - 1]
            return
        m = FETCH_RE.match(resp)
        if m:
            seq, body = int(m.group(1)), m.group(2)
            if not 1 <= seq <= len(self.uids):
                self.f.add("fetch_out_of_range", "session %d: FETCH %d of %d" % (self.n, seq, len(self.uids)))
                return
            u = UID_RE.search(body)
            if u:
                uid = int(u.group(1))
                known = self.uids[seq - 1]
                if known is not None and known != uid:
                    self.f.add("uid_changed", "session %d: seq %d was UID %d, now %d" % (self.n, seq, known, uid))
                self.uids[seq - 1] = uid
                before = [x for x in self.uids[:seq - 1] if x is not None]
                after = [x for x in self.uids[seq:] if x is not None]
                if (before and before[-1] >= uid) or (after and after[0] <= uid):
                    self.f.add("uid_order", "session %d: UID %d at seq %d out of order" % (self.n, uid, seq))
            fl = FLAGS_RE.search(body)
            if fl:
                for flag in fl.group(1).decode().split():
                    if flag not in SYSTEM and flag not in self.announced:
                        self.f.add("keyword_not_announced", "session %d: %s before FLAGS" % (self.n, flag))

    async def command(self, text, literal=None, ok_only=True):
        """Send one command; handle untagged responses; return (status, tagged line, untagged)."""
        self.tag += 1
        self.commands += 1
        tag = b"c%d" % self.tag
        if literal is None:
            self.w.write(tag + b" " + text + b"\r\n")
        else:
            self.w.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
            await self.w.drain()
            cont = await self.line()
            if not cont.startswith(b"+"):
                self.f.add("no_continuation", "session %d: %r" % (self.n, cont[:100]))
                return "BAD", cont, []
            self.w.write(literal + b"\r\n")
        await self.w.drain()
        seen = []
        while True:
            resp = await self.line()
            if resp.startswith(tag + b" "):
                status = resp.split(b" ", 2)[1].decode()
                if ok_only and status != "OK":
                    verb = text.split(b" ")[0 if not text.startswith(b"UID") else 1].decode()
                    self.f.add("tagged_" + status.lower() + "_" + verb.lower(),
                               "session %d: %s -> %s" % (self.n, text[:60].decode(errors="replace"),
                                                        resp[:160].decode(errors="replace")))
                return status, resp, seen
            if resp.startswith(b"* "):
                self.untagged(resp)
                seen.append(resp)

    async def select(self):
        self.uids = []
        await self.command(b"SELECT INBOX")
        if self.uids:
            await self.command(b"FETCH 1:* (UID)")

    def seq_range(self):
        n = len(self.uids)
        a = self.rng.randint(1, n)
        b = min(n, a + self.rng.randint(0, 9))
        return b"%d:%d" % (a, b)

    def known_uid(self):
        known = [u for u in self.uids if u is not None]
        return self.rng.choice(known) if known else None

    async def step(self):
        r = self.rng.random()
        n = len(self.uids)
        kw = self.rng.choice(KEYWORDS).encode()
        if r < 0.15 or n == 0:
            body = b"Subject: consistency %d\r\nFrom: s%d@example.com\r\n\r\nbody\r\n" % (self.rng.randrange(1 << 30), self.n)
            await self.command(b"APPEND INBOX (" + kw + b")", literal=body)
        elif r < 0.35:
            await self.command(b"FETCH " + self.seq_range() + b" (UID FLAGS)")
        elif r < 0.45:
            uid = self.known_uid()
            if uid is not None:
                await self.command(b"UID FETCH %d:%d (FLAGS RFC822.SIZE)" % (uid, uid + 5))
        elif r < 0.60:
            op = self.rng.choice([b"+FLAGS", b"-FLAGS", b"+FLAGS.SILENT"])
            flag = self.rng.choice([kw, b"\\Seen", b"\\Flagged"])
            await self.command(b"STORE " + self.seq_range() + b" " + op + b" (" + flag + b")")
        elif r < 0.70:
            if n > 30:
                await self.command(b"STORE " + self.seq_range() + b" +FLAGS.SILENT (\\Deleted)")
                await self.command(b"EXPUNGE")
            else:
                await self.command(b"NOOP")
        elif r < 0.75:
            uid = self.known_uid()
            if uid is not None and n > 30:
                await self.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
                await self.command(b"UID EXPUNGE %d" % uid)
        elif r < 0.80:
            await self.command(b"COPY " + self.seq_range() + b" " + OTHER.encode())
        elif r < 0.84:
            if n > 30:
                await self.command(b"MOVE " + self.seq_range() + b" " + OTHER.encode())
        elif r < 0.92:
            await self.command(self.rng.choice([b"SEARCH UNSEEN", b"UID SEARCH KEYWORD " + kw, b"SEARCH ALL"]))
        elif r < 0.98:
            await self.command(b"NOOP")
        else:
            await self.select()


async def open_session(n, port, user, password, failures, rng):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's self-signed certificate
    # The server allows 20 logged-in sessions per account and client address (like
    # Dovecot's mail_max_userip_connections): spread the sessions over loopback addresses.
    source = ("127.0.%d.%d" % (1 + (n + 2) // 4000, 2 + (n + 2) // 15 % 250), 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=1 << 20, local_addr=source)
    s = Session(n, reader, writer, failures, rng)
    greeting = await s.line()
    if not greeting.startswith(b"* OK"):
        raise RuntimeError("greeting: %r" % greeting)
    status, resp, _ = await s.command(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
    if status != "OK":
        raise RuntimeError("session %d: LOGIN: %r" % (n, resp))
    await s.select()
    return s


async def main():
    port, user, password, clients, ops = sys.argv[1:6]
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    port, clients, ops = int(port), int(clients), int(ops)
    failures = Failures()

    setup = await open_session(-1, port, user, password, failures, random.Random(seed))
    await setup.command(b"CREATE " + OTHER.encode(), ok_only=False)

    # Log in a few at a time: the point is the concurrent commands, not a login storm.
    sessions = []
    for i in range(0, clients, 20):
        sessions += await asyncio.gather(*(
            open_session(n, port, user, password, failures, random.Random(seed * 1000 + n))
            for n in range(i, min(clients, i + 20))))

    async def run(s):
        for _ in range(ops):
            await s.step()

    results = await asyncio.gather(*(run(s) for s in sessions), return_exceptions=True)
    for s, r in zip(sessions, results):
        if isinstance(r, BaseException):
            failures.add("session_error", "session %d: %r" % (s.n, r))

    # Everyone idle: a NOOP must bring each view to the mailbox a fresh session sees.
    fresh = await open_session(-2, port, user, password, failures, random.Random(seed))
    truth = list(fresh.uids)
    if None in truth:
        failures.add("fresh_view_incomplete", "a new session did not learn every UID")
    for s, r in zip(sessions, results):
        if isinstance(r, BaseException):
            continue
        await s.command(b"NOOP")
        if None in s.uids:
            await s.command(b"FETCH 1:* (UID)")
        if s.uids != truth:
            failures.add("view_differs", "session %d: %d messages vs %d (first difference at %s)" % (
                s.n, len(s.uids), len(truth),
                next((i + 1 for i, (a, b) in enumerate(zip(s.uids, truth)) if a != b), min(len(s.uids), len(truth)) + 1)))
        await s.command(b"LOGOUT", ok_only=False)
        s.w.close()
    commands = sum(s.commands for s in sessions)
    print(json.dumps({"sessions": clients, "commands": commands, "messages_at_end": len(truth),
                      "failures": failures.kinds, "examples": failures.examples}))
    sys.exit(1 if failures.kinds else 0)


asyncio.run(main())
