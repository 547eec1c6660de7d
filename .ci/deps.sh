#!/usr/bin/env bash
# Install every tool the tests talk to (Debian packages and Python clients).
# Idempotent; quiet unless something fails. Used by .ci/run and by developers.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  file            # static-build check
  g++             # libfuzzer-sys compiles libFuzzer (C++) for .ci/fuzz.sh
  swaks           # SMTP client
  libnet-ssleay-perl libio-socket-ssl-perl  # swaks --tls (only Recommended by swaks)
  python3         # smtplib / imaplib / poplib clients
  isync           # mbsync, IMAP sync client
  offlineimap3    # offlineimap, a second IMAP sync client
  dovecot-core dovecot-imapd dovecot-pop3d  # Dovecot reading our Maildir; benchmark baseline; the remote server of tests/it/fetch.rs and tests/it/import.rs
  fetchmail       # POP3 client
  postfix         # real sending MTA; smtp-sink
  pebble          # ACME test server
  dnsmasq-base    # test DNS server (SPF/DKIM/DMARC records, DNSBL zones)
  rspamd          # spam scanner, started offline by scan/rspamd tests
  clamav-daemon   # clamd, loaded with a test signature by scan/clamd tests
  postsrsd        # reference SRS implementation (mailauth/srs interop test)
  postgresql-15   # PostgreSQL store tests (src/test_pg.rs runs initdb/pg_ctl)
  prometheus      # promtool check metrics/rules, test rules; a real Prometheus (tests/it/monitoring.rs)
  yamllint        # compose and chart lint
  sieve-connect   # ManageSieve client (tests/it/managesieve.rs)
  knot knot-dnsutils  # a DNSSEC-signing DNS server and kdig (DANE, tests/it/outbound_tls.rs)
  openssl         # an independent SPKI hash for the TLSA record tests (src/dns/tlsa.rs, tests/it/dns.rs)
  libxml2-utils libmail-dmarc-perl  # xmllint, and RFC 7489's DMARC report XSD (rua-schema.xsd) to check ours against (src/dmarc/tests.rs, tests/it/dmarc_reports.rs)
  chromium        # the headless browser playwright drives (tests/it/web.rs)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  # Packages like postfix/dovecot try to start services; there is no init here.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Python test clients (into whichever python3 is first on PATH, as the tests run it).
if ! python3 -c 'import dkim, nacl, dns.zone, jsonschema' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'dkimpy>=1.1' 'pynacl>=1.5' 'dnspython>=2.4' 'jsonschema>=4'
fi
# ManageSieve clients (tests/it/managesieve.rs, tests/it/sieve_e2e.rs).
if ! python3 -c 'import sievelib.managesieve, managesieve' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'managesieve==0.8.1' 'sievelib==1.6.0'
fi
# DMARC aggregate report reader (tests/it/dmarc_reports.rs).
if ! python3 -c 'import parsedmarc' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'parsedmarc>=9'
fi
# The S3 API server the object-store tests run against (src/test_s3.rs); boto3 comes with it.
if ! python3 -c 'import moto.server, flask_cors, boto3' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'moto[server]>=5.1'
fi
# The smarthost the relay-mode tests deliver through (tests/it/smarthost.rs): implicit TLS,
# STARTTLS and AUTH from a server we did not write.
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'aiosmtpd==1.4.6'
fi
# The browser driver of the web page tests (tests/it/web.rs); it drives Debian's chromium,
# its own browser download is not used.
if ! python3 -c 'import playwright.sync_api' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'playwright>=1.45'
fi
bash .ci/deploy-deps.sh
