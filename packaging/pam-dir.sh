#!/bin/sh
# Prints the directory this system loads PAM modules from (where pam_unix.so
# lives), asking the system rather than guessing an architecture:
# 1. the package that ships pam_unix.so (Debian: libpam-modules),
# 2. pkg-config's libdir of pam + /security,
# 3. the usual library directories.
set -eu

found() {
  [ -e "$1/pam_unix.so" ] || return 1
  echo "$1"
  exit 0
}

if command -v dpkg >/dev/null 2>&1; then
  for pkg in $(dpkg-query -W -f='${binary:Package}\n' 'libpam-modules*' 2>/dev/null); do
    unix=$(dpkg -L "$pkg" 2>/dev/null | grep '/pam_unix\.so$' | head -n 1 || true)
    if [ -n "$unix" ]; then
      found "$(dirname "$unix")"
    fi
  done
fi

if command -v pkg-config >/dev/null 2>&1; then
  libdir=$(pkg-config --variable=libdir pam 2>/dev/null || true)
  if [ -n "$libdir" ]; then
    found "$libdir/security" || true
  fi
fi

for d in /lib/*/security /usr/lib/*/security /lib64/security /usr/lib64/security /lib/security /usr/lib/security; do
  found "$d" || true
done

echo "pam-dir.sh: cannot find the PAM module directory (no pam_unix.so found)" >&2
exit 1
