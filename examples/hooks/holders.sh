#!/bin/sh
# Example `exec` provisioner for elevated: keeps one allow-list per resource in $HOLDERS_DIR,
# one principal per line. Idempotent, as elevated requires: granting twice or revoking what is
# already gone succeeds. Exit status 0 means done; anything else is retried by elevated.
#
#   holders.sh grant|revoke PRINCIPAL RESOURCE LEASE_ID EXPIRES_AT
#
# elevated only passes validated names (letters, digits, '.', '_', '-', '@'); quote them anyway.
# elevated runs one call per resource at a time; the lock below also keeps other writers out.
set -eu
action=$1
principal=$2
resource=$3
dir=${HOLDERS_DIR:?HOLDERS_DIR is not set}
mkdir -p "$dir"
file="$dir/$resource.allow"
exec 9>"$file.lock"
flock 9
touch "$file"
tmp="$file.tmp.$$"
grep -vxF -- "$principal" "$file" > "$tmp" || true
case "$action" in
    grant) echo "$principal" >> "$tmp" ;;
    revoke) ;;
    *) rm -f "$tmp"; echo "unknown action '$action'" >&2; exit 2 ;;
esac
mv "$tmp" "$file"
# Read back: succeed only if the file now says what was asked.
if [ "$action" = grant ]; then
    grep -qxF -- "$principal" "$file"
else
    ! grep -qxF -- "$principal" "$file"
fi
