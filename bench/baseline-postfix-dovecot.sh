#!/bin/sh
# The baseline of issue 4's benchmark: Debian's Postfix (smtpd on a loopback port) handing
# mail to Dovecot LMTP, which writes a Maildir — the classic MX + MDA pair mailroom
# replaces — measured with bench/smtp-bench.sh exactly like mailroom is.
#
# usage (as root): bench/baseline-postfix-dovecot.sh [N] [C]
# Everything lives in a temp dir under /tmp and is stopped and removed at the end; nothing
# in /etc is touched. Postfix and Dovecot keep their default durability (Postfix fsyncs its
# queue file, Dovecot LMTP fsyncs the delivered message: mail_fsync = optimized).
set -eu
n=${1:-5000}
c=${2:-50}
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root (postfix master and dovecot start as root)" >&2; exit 2; }
for t in postfix dovecot smtp-source python3; do
    command -v "$t" >/dev/null || { echo "$t missing" >&2; exit 2; }
done
T=$(mktemp -d /tmp/mailroom-baseline.XXXXXX)
chmod 755 "$T"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SMTP_PORT=$(free_port)
LMTP_PORT=$(free_port)
cleanup() {
    postfix -c "$T/postfix" stop >/dev/null 2>&1 || true
    [ -f "$T/run/master.pid" ] && kill "$(cat "$T/run/master.pid")" 2>/dev/null || true
    sleep 1
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

# --- Dovecot LMTP -> Maildir ($T/mail/<domain>/<user>/new)
mkdir -p "$T/run" "$T/mail" "$T/home"
chown 65534:65534 "$T/mail" "$T/home"
cat > "$T/dovecot.conf" <<CONF
base_dir = $T/run
state_dir = $T/run/state
log_path = $T/dovecot.log
ssl = no
protocols = lmtp
listen = 127.0.0.1
mail_location = maildir:$T/mail/%d/%n
first_valid_uid = 0
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$T/home/%d/%n
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
service anvil {
  chroot =
}
service stats {
  chroot =
}
CONF
dovecot -c "$T/dovecot.conf"

# --- Postfix smtpd -> lmtp:127.0.0.1:LMTP_PORT for bench.example
mkdir -p "$T/postfix" "$T/spool" "$T/lib"
chown postfix "$T/lib"
cat > "$T/postfix/master.cf" <<CONF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
lmtp unix - - n - - lmtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
CONF
cat > "$T/postfix/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $T/spool
data_directory = $T/lib
mail_owner = postfix
setgid_group = postdrop
myhostname = baseline.example
mydomain = baseline.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = bench.example
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
smtpd_reject_unlisted_recipient = no
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
maillog_file_prefixes = /tmp
maillog_file = $T/maillog
alias_maps =
alias_database =
CONF
postfix -c "$T/postfix" start >/dev/null
sleep 1
echo "baseline: postfix 127.0.0.1:$SMTP_PORT -> dovecot lmtp 127.0.0.1:$LMTP_PORT" >&2
mkdir -p "$T/mail/bench.example/bench/new"
chown -R 65534:65534 "$T/mail"
"$here/smtp-bench.sh" "127.0.0.1:$SMTP_PORT" "$T/mail/bench.example/bench/new" "$n" "$c" bench@bench.example
