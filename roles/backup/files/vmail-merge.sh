# Extract the members listed in /in/vmail.plan (chosen by the restore: no
# message whose base name the Maildir already holds, no file that exists)
# from /in/vmail.tar.gz onto the mail volume mounted at /dst, then give
# every entry of the volume to the vmail user. Run by the restore in a
# throwaway container. Env: VMAIL_UID, VMAIL_GID.
# Prints "extracted N" and "owner fixed M".
set -euo pipefail
export LC_ALL=C
cd /dst
extracted=0
if [ -s /in/vmail.plan ]; then
    nice -n 10 tar -xzf /in/vmail.tar.gz --numeric-owner --same-owner --same-permissions --no-recursion \
        --verbatim-files-from --no-unquote -T /in/vmail.plan
    extracted=$(wc -l < /in/vmail.plan)
    # Dovecot trusts a Maildir's index while new/ and cur/ keep the mtime it
    # recorded, and tar gives restored directories their archived mtime:
    # touch the ones that received messages so Dovecot rescans them.
    awk '{ n = $0; sub(/.*\//, "", n); d = substr($0, 1, length($0) - length(n) - 1)
           if (d ~ /\/(new|cur)$/) print d }' /in/vmail.plan | sort -u | xargs -r -d '\n' touch -c --
fi
fixed=$(find . \( ! -uid "$VMAIL_UID" -o ! -gid "$VMAIL_GID" \) -print | wc -l)
if [ "$fixed" -gt 0 ]; then
    find . \( ! -uid "$VMAIL_UID" -o ! -gid "$VMAIL_GID" \) -print0 | xargs -0r chown -h "$VMAIL_UID:$VMAIL_GID"
fi
echo "extracted $extracted"
echo "owner fixed $fixed"
