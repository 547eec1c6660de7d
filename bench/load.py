#!/usr/bin/env python3
"""Load generators for bench/run: IMAP mixed operations, POP3 download, idle IMAP
connections, and an SMTP ingest client used only to check that Python is not the
bottleneck (compared with Postfix's smtp-source on the same server).

Every loop is bounded (a fixed number of sessions and commands) and only loopback
addresses are used. Each subcommand prints one JSON object on stdout.

    load.py imap HOST PORT [--tls] --users u1,u2 --password pw --clients 10 --sessions 40 --iters 25 [--timings]
    load.py pop3 HOST PORT --users u1,u2 --password pw --clients 10 --sessions 20
    load.py idle HOST PORT --users u1 --password pw --count 1000 --pid 123 [--pid ...]
    load.py smtp HOST PORT --rcpt a@b --clients 50 --messages 2000 [--message FILE --mail-from x@y]

smtp also reports DATA -> 250 latency percentiles (content written to reply read).
"""

import argparse
import asyncio
import json
import os
import random
import resource
import ssl
import sys
import time


TLS = None  # set by --tls: implicit TLS (IMAPS/POP3S), certificates not verified (self-signed)


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def loopback(host):
    if host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("refusing a non-loopback target: " + host)


class Imap:
    """A minimal IMAP4rev1 client: tagged commands, untagged lines and literals are read
    and counted, not parsed (the load, not the answer, is what we measure)."""

    def __init__(self, reader, writer):
        self.r, self.w, self.n = reader, writer, 0
        self.bytes = 0

    @classmethod
    async def connect(cls, host, port):
        r, w = await asyncio.open_connection(host, port, limit=1 << 20, ssl=TLS)
        c = cls(r, w)
        greeting = await r.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError("bad greeting %r" % greeting)
        return c

    async def cmd(self, text, timings=None):
        start = time.monotonic()
        self.n += 1
        tag = b"a%d" % self.n
        self.w.write(tag + b" " + text.encode() + b"\r\n")
        await self.w.drain()
        while True:
            line = await self.r.readline()
            if not line:
                raise RuntimeError("connection closed after %r" % text)
            self.bytes += len(line)
            # A literal {n}\r\n: read its n bytes, the line continues after it.
            while line.endswith(b"}\r\n") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1 : -3])
                data = await self.r.readexactly(size)
                self.bytes += size
                line = await self.r.readline()
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1 :].startswith(b"OK"):
                    raise RuntimeError("%s -> %r" % (text, line))
                if timings is not None:
                    key = text.split(" (")[0].split(" ")[0] if not text.startswith("SEARCH") else text
                    if text.startswith("FETCH"):
                        key = "FETCH ENVELOPE" if "ENVELOPE" in text else "FETCH BODY"
                    timings.setdefault(key, []).append(time.monotonic() - start)
                return

    async def close(self):
        try:
            await self.cmd("LOGOUT")
        except Exception:
            pass
        self.w.close()


async def imap_session(host, port, user, password, iters, rng, stats):
    c = await Imap.connect(host, port)
    t = stats.get("timings")
    await c.cmd('LOGIN "%s" "%s"' % (user, password), t)
    await c.cmd("SELECT INBOX", t)
    total = stats["messages"][user]
    for _ in range(iters):
        lo = rng.randint(1, max(1, total - 19))
        hi = min(total, lo + 19)
        one = rng.randint(1, total)
        await c.cmd("FETCH %d:%d (UID FLAGS ENVELOPE)" % (lo, hi), t)
        await c.cmd("FETCH %d (BODY.PEEK[])" % one, t)
        flag = rng.choice(["+FLAGS (\\Seen)", "-FLAGS (\\Seen)", "+FLAGS (\\Flagged)"])
        await c.cmd("STORE %d %s" % (rng.randint(1, total), flag), t)
        await c.cmd(rng.choice(["SEARCH UNSEEN", "SEARCH FLAGGED", "SEARCH FROM \"bench\""]), t)
        stats["commands"] += 4
    await c.close()
    stats["commands"] += 3  # LOGIN, SELECT, LOGOUT
    stats["bytes"] += c.bytes


async def count_messages(host, port, user, password):
    c = await Imap.connect(host, port)
    await c.cmd('LOGIN "%s" "%s"' % (user, password))
    c.w.write(b"s SELECT INBOX\r\n")
    await c.w.drain()
    exists = 0
    while True:
        line = await c.r.readline()
        if line.endswith(b" EXISTS\r\n"):
            exists = int(line.split()[1])
        if line.startswith(b"s "):
            break
    await c.close()
    return exists


async def run_imap(a):
    users = a.users.split(",")
    stats = {"commands": 0, "bytes": 0, "messages": {}}
    if a.timings:
        stats["timings"] = {}
    for u in users:
        stats["messages"][u] = await count_messages(a.host, a.port, u, a.password)
        if stats["messages"][u] < 20:
            sys.exit("%s has only %d messages" % (u, stats["messages"][u]))
    queue = asyncio.Queue()
    for i in range(a.sessions):
        queue.put_nowait(users[i % len(users)])

    async def worker(k):
        rng = random.Random(k)
        while not queue.empty():
            user = queue.get_nowait()
            await imap_session(a.host, a.port, user, a.password, a.iters, rng, stats)

    start = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(a.clients)))
    secs = time.monotonic() - start
    out = {"clients": a.clients, "sessions": a.sessions, "commands": stats["commands"],
           "seconds": round(secs, 3), "rate": round(stats["commands"] / secs, 1),
           "mbytes": round(stats["bytes"] / 1e6, 1)}
    if a.timings:
        # Mean and 90th percentile latency per command kind, in milliseconds.
        out["latency_ms"] = {k: {"n": len(v), "mean": round(1000 * sum(v) / len(v), 3),
                                 "p90": round(1000 * sorted(v)[int(len(v) * 0.9)], 3)}
                             for k, v in sorted(stats["timings"].items())}
    return out


async def pop3_session(host, port, user, password):
    r, w = await asyncio.open_connection(host, port, limit=1 << 20, ssl=TLS)

    async def status():
        line = await r.readline()
        if not line.startswith(b"+OK"):
            raise RuntimeError("pop3: %r" % line)
        return line

    async def multiline():
        size = 0
        while True:
            line = await r.readline()
            if not line:
                raise RuntimeError("pop3: closed")
            if line == b".\r\n":
                return size
            size += len(line)

    await status()
    for cmd in ("USER " + user, "PASS " + password):
        w.write(cmd.encode() + b"\r\n")
        await w.drain()
        await status()
    w.write(b"STAT\r\n")
    await w.drain()
    count = int((await status()).split()[1])
    got = 0
    # Pipelined in windows of 10 (RFC 2449 PIPELINING is what fetchmail and others use).
    for lo in range(1, count + 1, 10):
        batch = range(lo, min(count, lo + 9) + 1)
        w.write(b"".join(b"RETR %d\r\n" % i for i in batch))
        await w.drain()
        for _ in batch:
            await status()
            got += await multiline()
    w.write(b"QUIT\r\n")
    await w.drain()
    try:
        await r.read()
    except (ssl.SSLError, ConnectionError):
        pass  # peers may close without a TLS close_notify after QUIT
    w.close()
    return count, got


async def run_pop3(a):
    users = a.users.split(",")
    queue = asyncio.Queue()
    for i in range(a.sessions):
        queue.put_nowait(users[i % len(users)])
    totals = {"messages": 0, "bytes": 0}
    # POP3 locks a maildrop for the whole session (RFC 1939 section 8; mailroom answers a
    # second session with -ERR [IN-USE]): a worker that picks a user whose previous
    # session is still running waits for it instead of failing the run.
    locks = {u: asyncio.Lock() for u in users}

    async def worker():
        while not queue.empty():
            user = queue.get_nowait()
            async with locks[user]:
                n, b = await pop3_session(a.host, a.port, user, a.password)
            totals["messages"] += n
            totals["bytes"] += b

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(a.clients)))
    secs = time.monotonic() - start
    return {"clients": a.clients, "sessions": a.sessions, "messages": totals["messages"],
            "seconds": round(secs, 3), "rate": round(totals["messages"] / secs, 1),
            "mbytes_per_s": round(totals["bytes"] / secs / 1e6, 1)}


def proc_mem(pids):
    """Sum of RSS, PSS and the anonymous part of PSS (KiB) over the given processes, from
    /proc/PID/smaps_rollup. A connection's own memory is anonymous (heap, buffers); the
    file-backed part is the program's pages, whose share in PSS moves whenever another
    process mapping the same binary starts or exits."""
    rss = pss = anon = 0
    for pid in pids:
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Pss_Anon:"):
                        anon += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return rss, pss, anon


def tree(roots):
    """The given pids and all their descendants (Dovecot forks one process per session)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], list(roots)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


async def run_idle(a):
    users = a.users.split(",")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.count + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)), hard))
    await asyncio.sleep(0.5)
    rss0, pss0, anon0 = proc_mem(tree(a.pid))
    procs0 = len(tree(a.pid))
    conns = []
    # The first user is the probe's (new clients, one at a time); the others hold the idle
    # connections (at most 20 per user and address, as Dovecot's mail_max_userip_connections).
    probe, held = users[0], users[1:] or users
    sem = asyncio.Semaphore(a.parallel)

    async def open_one(i):
        async with sem:
            c = await Imap.connect(a.host, a.port)
            await c.cmd('LOGIN "%s" "%s"' % (held[i % len(held)], a.password))
            await c.cmd("SELECT INBOX")
            conns.append(c)

    # New clients' answer times with no other connection, then with every idle one held.
    alone = await probe_new_clients(a, probe)
    start = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(a.count)))
    opened = time.monotonic() - start
    await asyncio.sleep(a.settle)
    pids = tree(a.pid)
    rss1, pss1, anon1 = proc_mem(pids)
    beside = await probe_new_clients(a, probe)
    # Every connection must still be alive: one NOOP on a sample of them.
    for c in conns[:: max(1, len(conns) // 50)]:
        await c.cmd("NOOP")
    for c in conns:
        c.w.close()
    return {"connections": len(conns), "open_seconds": round(opened, 2),
            "processes_before": procs0, "processes_after": len(pids),
            "rss_before_kib": rss0, "rss_after_kib": rss1,
            "pss_before_kib": pss0, "pss_after_kib": pss1,
            "rss_per_conn_kib": round((rss1 - rss0) / len(conns), 1),
            "pss_per_conn_kib": round((pss1 - pss0) / len(conns), 1),
            "pss_anon_per_conn_kib": round((anon1 - anon0) / len(conns), 1),
            "new_client_ms_alone": alone, "new_client_ms_beside_idle": beside}


async def probe_new_clients(a, user, n=50):
    """One new client at a time, `n` times: milliseconds from connect to the greeting
    (TCP, TLS handshake when --tls), and from then through LOGIN, SELECT INBOX and
    LOGOUT; p50/p99/max of each."""
    greet, session = [], []
    for i in range(n):
        t0 = time.monotonic()
        c = await Imap.connect(a.host, a.port)
        t1 = time.monotonic()
        await c.cmd('LOGIN "%s" "%s"' % (user, a.password))
        await c.cmd("SELECT INBOX")
        await c.cmd("LOGOUT")
        t2 = time.monotonic()
        c.w.close()
        greet.append(t1 - t0)
        session.append(t2 - t1)

    def pct(xs):
        xs = sorted(xs)
        at = lambda q: round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 2)
        return {"p50": at(0.5), "p99": at(0.99), "max": at(1.0)}

    return {"greeting": pct(greet), "login_select_logout": pct(session)}


async def smtp_session(host, port, rcpt, body, count, done, mail_from, latencies):
    r, w = await asyncio.open_connection(host, port)

    async def reply(want):
        while True:
            line = await r.readline()
            if not line:
                raise RuntimeError("smtp: closed")
            if line[3:4] != b"-":
                if not line.startswith(want):
                    raise RuntimeError("smtp: %r" % line)
                return

    await reply(b"220")
    w.write(b"EHLO %s\r\n" % mail_from.rsplit("@", 1)[-1].encode())
    await reply(b"250")
    for _ in range(count):
        # PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write, like smtp-source.
        w.write(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (mail_from.encode(), rcpt.encode()))
        await reply(b"250")
        await reply(b"250")
        await reply(b"354")
        # DATA -> 250: from the content's write to the reply that it is stored.
        t0 = time.monotonic()
        w.write(body)
        await reply(b"250")
        latencies.append(time.monotonic() - t0)
        done[0] += 1
    w.write(b"QUIT\r\n")
    await w.drain()
    w.close()


async def run_smtp(a):
    if a.message:
        # A pre-formatted message (bench/run's DKIM-signed mail, LF line ends): CRLF, dot-stuffed.
        with open(a.message, "rb") as f:
            lines = f.read().replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")
        body = b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in lines) + b".\r\n"
    else:
        line = b"X" * 78 + b"\r\n"
        body = (b"From: <load@bench.example>\r\nTo: <%s>\r\nSubject: load\r\n\r\n" % a.rcpt.encode()
                + line * (a.size // len(line)) + b".\r\n")
    per = [a.messages // a.clients + (1 if i < a.messages % a.clients else 0) for i in range(a.clients)]
    done, latencies = [0], []
    start = time.monotonic()
    await asyncio.gather(*(smtp_session(a.host, a.port, a.rcpt, body, n, done, a.mail_from, latencies)
                           for n in per if n))
    secs = time.monotonic() - start
    latencies.sort()
    pct = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)
    return {"clients": a.clients, "messages": done[0], "seconds": round(secs, 3),
            "rate": round(done[0] / secs, 1),
            "data_to_250_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="load", required=True)
    for name in ("imap", "pop3", "idle", "smtp"):
        s = sub.add_parser(name)
        s.add_argument("host")
        s.add_argument("port", type=int)
        s.add_argument("--users", default="bench@bench.example")
        s.add_argument("--password", default="bench")
        s.add_argument("--clients", type=int, default=1)
        s.add_argument("--sessions", type=int, default=10)
        s.add_argument("--iters", type=int, default=25)
        s.add_argument("--count", type=int, default=1000)
        s.add_argument("--parallel", type=int, default=100)
        s.add_argument("--settle", type=float, default=2.0)
        s.add_argument("--pid", type=int, action="append", default=[])
        s.add_argument("--rcpt", default="bench@bench.example")
        s.add_argument("--messages", type=int, default=1000)
        s.add_argument("--size", type=int, default=4096)
        s.add_argument("--message", help="smtp: send this file (LF or CRLF lines) instead of a generated one")
        s.add_argument("--mail-from", default="load@bench.example", help="smtp: envelope sender (its domain is the EHLO)")
        s.add_argument("--tls", action="store_true", help="implicit TLS (IMAPS, POP3S)")
        s.add_argument("--timings", action="store_true", help="imap: latency per command kind")
    a = p.parse_args()
    loopback(a.host)
    global TLS
    if a.tls:
        TLS = tls_context()
    fn = {"imap": run_imap, "pop3": run_pop3, "idle": run_idle, "smtp": run_smtp}[a.load]
    print(json.dumps(asyncio.run(fn(a))))


if __name__ == "__main__":
    main()
