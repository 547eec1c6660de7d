#!/bin/sh
# End-to-end SMTP delivery rate: N messages of ~4 KiB over C concurrent sessions (Postfix's
# smtp-source), timed from the first connection to the last message file appearing in the
# Maildir `new/` directory (the receiving server only renames a file into new/ after
# fsyncing it, so this is "accepted and durable", not just "accepted").
#
# usage: bench/smtp-bench.sh HOST:PORT MAILDIR_NEW_DIR [N] [C] [RCPT] [SIZE] [FILE]
#   MAILDIR_NEW_DIR  the recipient's Maildir new/ directory on this machine, or `-` for a
#                    server that answers 250 only once the message is durable (mailroom on
#                    PostgreSQL: 250 after COMMIT), so the last reply is the end
#   FILE             a message to send as is (smtp-source -F; bench/run's DKIM-signed mail)
#                    instead of smtp-source's generated SIZE-byte one
#   N=5000 C=50 RCPT=bench@bench.example SIZE=4096
# Prints one line: `messages=N sessions=C seconds=S rate=R msg/s`.
set -eu
target=$1
newdir=$2
n=${3:-5000}
c=${4:-50}
rcpt=${5:-bench@bench.example}
size=${6:-4096}
file=${7:-}

command -v smtp-source >/dev/null || { echo "smtp-source missing (apt-get install postfix)" >&2; exit 2; }
before=$(find "$newdir" -maxdepth 1 -type f 2>/dev/null | wc -l)
want=$((before + n))
start=$(date +%s.%N)
if [ -n "$file" ]; then set -- -F "$file"; else set -- -l "$size"; fi
smtp-source -d -s "$c" -m "$n" "$@" -f sender@bench-client.example -t "$rcpt" \
    -M bench-client.example "$target"
[ "$newdir" = "-" ] && want=0
# Wait (up to 10 minutes) for every message to be in new/.
deadline=$(( $(date +%s) + 600 ))
while :; do
    have=$(find "$newdir" -maxdepth 1 -type f 2>/dev/null | wc -l)
    [ "$have" -ge "$want" ] && break
    if [ "$(date +%s)" -gt "$deadline" ]; then
        echo "timeout: $((have - before)) of $n messages delivered" >&2
        exit 1
    fi
    sleep 0.05
done
end=$(date +%s.%N)
awk -v n="$n" -v c="$c" -v s="$start" -v e="$end" \
    'BEGIN { t = e - s; printf "messages=%d sessions=%d seconds=%.2f rate=%.0f msg/s\n", n, c, t, n / t }'
