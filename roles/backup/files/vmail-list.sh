# What a restore starts from: the members of /in/vmail.tar.gz
# (/in/vmail.members) and what the mail volume, mounted at /dst, already
# holds (/in/vmail.existing; directories end with '/'). Run by the restore
# in a throwaway container.
set -euo pipefail
export LC_ALL=C
tar -tzf /in/vmail.tar.gz --quoting-style=literal > /in/vmail.members
cd /dst
find . -mindepth 1 \( -type d -printf '%p/\n' -o -type f -print \) > /in/vmail.existing
