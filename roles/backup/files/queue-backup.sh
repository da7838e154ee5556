# Archive the complete queue files of Postfix's queue volume (mounted
# read-only at /src) into /out/queue.tar.gz. Run by the backup role in a
# throwaway container.
# Only active, deferred, hold and incoming, and only complete files: cleanup
# creates a queue file with mode 0600 and sets the owner execute bit once it
# is complete. A file that leaves the queue while tar runs (delivered) is
# skipped. Env: LEVEL (gzip level). Writes /out/queue.tar.gz, /out/queue.count.
set -euo pipefail
export LC_ALL=C
cd /src
rm -f /out/queue.tar /out/queue.tar.gz
find active deferred hold incoming -type f -perm -u=x 2>/dev/null > /tmp/list || true
rc=0
nice -n 10 tar -cf /out/queue.tar --numeric-owner --no-recursion --verbatim-files-from --no-unquote \
    --ignore-failed-read --warning=no-file-removed --warning=no-file-changed -T /tmp/list || rc=$?
[ "$rc" -le 1 ] || exit "$rc"
tar -tf /out/queue.tar | wc -l > /out/queue.count
nice -n 10 gzip -n -"${LEVEL:-6}" /out/queue.tar
