# Archive the mail volume (mounted read-only at /src) into /out/vmail.tar.gz
# while mail flows. Run by the backup role in a throwaway container.
#
# Dovecot moves a message from new/ to cur/ when a client sees it and renames
# it in cur/ when its flags change. To miss nothing, three passes:
#   1. messages in new/;
#   2. then, listed after pass 1 ended, everything else (directories, cur/,
#      Dovecot's index and uidlist files, Sieve scripts), skipping tmp/
#      (deliveries in progress) and paths pass 1 already holds;
#   3. then every message in new/ or cur/ whose base name (before ':') is not
#      archived yet: one renamed while pass 2 ran.
# A message moving while the passes run is archived twice, never zero times;
# the restore keeps one copy per base name.
# Env: LEVEL (gzip level). Prints nothing; writes /out/vmail.tar.gz and
# /out/vmail.count (distinct messages archived).
set -euo pipefail
export LC_ALL=C
cd /src
out=/out/vmail.tar
rm -f "$out" "$out.gz"

# tar exits 1 when a file vanished or changed while it was read: expected
# while mail flows (the next pass picks the file up under its new name).
archive() {
    local rc=0
    nice -n 10 tar "$@" --numeric-owner --no-recursion --verbatim-files-from --no-unquote \
        --ignore-failed-read --warning=no-file-removed --warning=no-file-changed --warning=no-file-shrank \
        -T /tmp/list || rc=$?
    [ "$rc" -le 1 ] || exit "$rc"
}
# "maildir|base name" of each message path on stdin (others print nothing).
keys() {
    awk '{ n = $0; sub(/.*\//, "", n); d = substr($0, 1, length($0) - length(n) - 1)
           if (d ~ /\/(new|cur)$/) { sub(/\/(new|cur)$/, "", d); sub(/:.*/, "", n); print d "|" n } }'
}

find . -mindepth 1 -type f -path '*/new/*' > /tmp/list
archive -cf "$out"
sort /tmp/list > /tmp/done

find . -mindepth 1 \( -type d -printf '%p/\n' -o -type f ! -path '*/tmp/*' -print \) | sort > /tmp/all
comm -23 /tmp/all /tmp/done > /tmp/list
archive -rf "$out"

tar -tf "$out" --quoting-style=literal | keys | sort -u > /tmp/have
find . -mindepth 1 -type f \( -path '*/new/*' -o -path '*/cur/*' \) > /tmp/now
awk 'NR == FNR { have[$0] = 1; next }
     { n = $0; sub(/.*\//, "", n); d = substr($0, 1, length($0) - length(n) - 1)
       sub(/\/(new|cur)$/, "", d); sub(/:.*/, "", n); if (!((d "|" n) in have)) print }' /tmp/have /tmp/now > /tmp/list
archive -rf "$out"

tar -tf "$out" --quoting-style=literal | keys | sort -u | wc -l > /out/vmail.count
nice -n 10 gzip -n -"${LEVEL:-6}" "$out"
