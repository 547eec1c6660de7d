#!/usr/bin/env python3
"""ManageSieve round trip with PyPI sievelib (and the `managesieve` package's client),
two clients we did not write, against a running mailroom.

Usage: managesieve_sievelib.py HOST PORT USER PASSWORD

sievelib verifies the certificate with the system roots; the test server's is
self-signed for another name, so verification is switched off for this loopback test.
"""

import ssl
import sys

import managesieve
from sievelib import managesieve as sl

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ssl.create_default_context = ssl._create_unverified_context
sl.ssllib.create_default_context = ssl._create_unverified_context

KEEP = 'require ["fileinto"];\r\nif header :contains "subject" "[list]" {\r\n  fileinto "Lists";\r\n}\r\n'
BROKEN = 'require "fileinto";\r\nkeep;\r\nfileinto "Junk"\r\nstop;\r\n'

c = sl.Client(host, port)
assert c.connect(user, password, starttls=True, authmech="PLAIN"), c.errmsg
caps = c.get_sieve_capabilities()
assert "vacation" in caps and "fileinto" in caps, caps
assert c.get_implementation() == "mailroom", c.get_implementation()

assert c.havespace("main", len(KEEP)), c.errmsg
assert c.putscript("main", KEEP), c.errmsg
assert c.putscript("other", "keep;\r\n"), c.errmsg
assert c.setactive("main"), c.errmsg
active, others = c.listscripts()
assert active == "main" and others == ["other"], (active, others)
# sievelib joins the lines it read with LF and drops the last line end.
got = c.getscript("main")
assert got.replace("\r\n", "\n").rstrip("\n") == KEEP.replace("\r\n", "\n").rstrip("\n"), repr(got)

# Refusals: a broken script names its line, the active script cannot be deleted, a
# rename onto an existing name is refused.
assert not c.putscript("broken", BROKEN)
assert b"line 4" in c.errmsg or b"line 3" in c.errmsg, c.errmsg
print("broken script refused:", c.errmsg.decode())
assert not c.checkscript(BROKEN)
assert c.checkscript(KEEP), c.errmsg
assert not c.deletescript("main")
assert not c.renamescript("other", "main")

assert c.renamescript("main", "filters"), c.errmsg
active, others = c.listscripts()
assert active == "filters" and others == ["other"], (active, others)
assert c.setactive(""), c.errmsg
assert c.deletescript("filters"), c.errmsg
active, others = c.listscripts()
assert active is None and others == ["other"], (active, others)
c.logout()

# The `managesieve` package (Python's old imaplib-style client), over STARTTLS.
m = managesieve.MANAGESIEVE(host, port, use_tls=True, tls_verify=False)
assert m.login("", user, password) == "OK", "managesieve login"
status, scripts = m.listscripts()
assert status == "OK" and [s for s, _ in scripts] == ["other"], (status, scripts)
status, body = m.getscript("other")
assert status == "OK" and body.replace("\r\n", "\n") == "keep;\n", (status, body)
assert m.logout() == "OK"
print("ok")
