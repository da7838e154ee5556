# Put the queue files of /in/queue.tar.gz into the hold queue of the queue
# volume mounted at /q, once per archive: the marker
# /q/maillab-restored/$ARCHIVE_ID records that this archive's queue was
# restored, so a second restore does not deliver its mail twice. A queue file
# whose name is already in the queue is left out. Run by the restore in a
# throwaway container (Postfix's image: the postfix user exists).
# Writes /in/queue.result: "already" or "restored N skipped M", and
# /in/queue.restored: "<inode> <original queue> <name>" per restored file.
set -euo pipefail
export LC_ALL=C
marker=/q/maillab-restored/$ARCHIVE_ID
: > /in/queue.restored
if [ -e "$marker" ]; then
    echo already > /in/queue.result
    exit 0
fi
rm -rf /in/queue && mkdir -p /in/queue
tar -xzf /in/queue.tar.gz -C /in/queue --numeric-owner --same-owner --same-permissions
restored=0 skipped=0
while IFS= read -r -d '' file; do
    name=${file##*/}
    origin=${file%%/*}
    if [ -n "$(find /q/incoming /q/active /q/deferred /q/hold /q/maildrop -name "$name" -print -quit 2>/dev/null)" ]; then
        skipped=$((skipped + 1))
        continue
    fi
    # Copy under a temporary name, then rename: Postfix never sees half a file.
    cp -p "/in/queue/$file" "/q/hold/.maillab-$name"
    chown postfix "/q/hold/.maillab-$name"
    chmod 0700 "/q/hold/.maillab-$name"
    mv -T "/q/hold/.maillab-$name" "/q/hold/$name"
    echo "$(stat -c %i "/q/hold/$name") $origin $name" >> /in/queue.restored
    restored=$((restored + 1))
done < <(find /in/queue -type f -printf '%P\0')
mkdir -p /q/maillab-restored
date -u +%Y-%m-%dT%H:%M:%SZ > "$marker"
echo "restored $restored skipped $skipped" > /in/queue.result
