# Test helper: verify the ARC chain of the message on stdin with python's dkim
# (dkimpy), asking the DNS server at argv[1] (ip) : argv[2] (port).
# Prints the chain validation status: pass, fail or none.
import sys
import dkim
import dns.resolver

r = dns.resolver.Resolver(configure=False)
r.nameservers = [sys.argv[1]]
r.port = int(sys.argv[2])

def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        ans = r.resolve(name, "TXT", lifetime=timeout)
    except Exception:
        return None
    return b"".join(b"".join(rd.strings) for rd in ans)

cv, results, comment = dkim.arc_verify(sys.stdin.buffer.read(), dnsfunc=dnsfunc)
print(cv.decode(), comment, file=sys.stdout)
