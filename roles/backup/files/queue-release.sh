# Run inside the Postfix container after queue-restore.sh: postsuper -s gives
# restored queue files the names their new inodes call for (short queue ids
# derive from the inode), then the restored files that were not on hold on
# the old server are released (postsuper -H) and the queue is flushed.
# Stdin: "<inode> <original queue> <name>" per restored file (renaming keeps
# the inode). Env: RELEASE (true: release; false: leave all on hold).
set -euo pipefail
export LC_ALL=C
cat > /tmp/maillab-restored
postsuper -s
if [ "${RELEASE:-true}" = true ] && [ -s /tmp/maillab-restored ]; then
    find /var/spool/postfix/hold -type f -printf '%i %f\n' \
        | awk 'NR == FNR { if ($2 != "hold") want[$1] = 1; next } ($1 in want) { print $2 }' /tmp/maillab-restored - \
        > /tmp/maillab-release
    if [ -s /tmp/maillab-release ]; then
        postsuper -H - < /tmp/maillab-release
    fi
    postqueue -f
fi
echo "released $(wc -l < /tmp/maillab-release 2>/dev/null || echo 0)"
rm -f /tmp/maillab-restored /tmp/maillab-release
