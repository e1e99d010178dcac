#!/usr/bin/env bash
# Builds the Debian package otpgate_VERSION_ARCH.deb with dpkg-deb from a
# staged tree (the same files, paths and modes as packaging/install.sh).
#
#   packaging/deb/build.sh [--bin-dir DIR] [--out-dir DIR] [--compression xz|gzip|none]
#
# --bin-dir DIR   package the otpgated, otpgate and libpam_otpgate.so found in
#                 DIR instead of running `cargo build --release --workspace`
#                 (tests package the debug build this way)
# --out-dir DIR   where the .deb goes (default: target/debian in the repository)
# --compression   dpkg-deb's compression (default xz)
#
# Then, as root:  apt-get install ./target/debian/otpgate_VERSION_ARCH.deb
# Runs as any user (file ownership in the package is root's).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pkg=$(dirname "$here")
repo=$(dirname "$pkg")
prog=build.sh

MAINTAINER="otpgate maintainers <otpgate@example.invalid>"
HOMEPAGE="https://example.invalid/otpgate"

die() {
  echo "$prog: $*" >&2
  exit 1
}

bin_dir=
out_dir=$repo/target/debian
compression=xz
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir)
      bin_dir=${2:?--bin-dir needs a directory}
      shift 2
      ;;
    --out-dir)
      out_dir=${2:?--out-dir needs a directory}
      shift 2
      ;;
    --compression)
      compression=${2:?--compression needs xz, gzip or none}
      shift 2
      ;;
    -h | --help)
      sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

for tool in dpkg-deb dpkg strip gzip md5sum; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg binutils gzip coreutils)"
done

if [ -z "$bin_dir" ]; then
  command -v cargo >/dev/null || die "cargo is missing: install Rust 1.89 or newer (rustup), or pass --bin-dir"
  echo "$prog: cargo build --release --workspace"
  (cd "$repo" && env -u CARGO_TARGET_DIR cargo build --release --workspace)
  bin_dir=$repo/target/release
fi
for f in otpgated otpgate libpam_otpgate.so; do
  [ -f "$bin_dir/$f" ] || die "$bin_dir/$f is missing"
done

# The workspace version ([workspace.package] version = "X.Y.Z").
version=$(awk '
  /^\[/ { section = $0 }
  section == "[workspace.package]" && $1 == "version" { gsub(/[" ]/, "", $3); print $3; exit }
' "$repo/Cargo.toml")
[ -n "$version" ] || die "no [workspace.package] version in $repo/Cargo.toml"
arch=$(dpkg --print-architecture)
pam_dir=$("$pkg/pam-dir.sh")

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN"

put() { # SRC DEST MODE
  install -D -m "$3" "$1" "$root$2"
}
put_bin() { # SRC DEST MODE: without debug symbols, as Debian ships binaries
  install -d -m 0755 "$root$(dirname "$2")"
  strip --strip-unneeded -o "$root$2" "$1"
  chmod "$3" "$root$2"
}

put_bin "$bin_dir/otpgated" /usr/sbin/otpgated 0755
put_bin "$bin_dir/otpgate" /usr/bin/otpgate 0755
put_bin "$bin_dir/libpam_otpgate.so" "$pam_dir/pam_otpgate.so" 0644
put "$pkg/otpgated-ctl" /usr/libexec/otpgate/otpgated-ctl 0755
put "$pkg/dbus/org.otpgate.Otpgate1.conf" /usr/share/dbus-1/system.d/org.otpgate.Otpgate1.conf 0644
put "$pkg/dbus/org.otpgate.Otpgate1.service" /usr/share/dbus-1/system-services/org.otpgate.Otpgate1.service 0644
put "$pkg/otpgated.service" /lib/systemd/system/otpgated.service 0644
put "$pkg/pam-configs/otpgate" /usr/share/pam-configs/otpgate 0644
put "$pkg/otpgate.toml" /etc/otpgate/otpgate.toml 0644
put "$pkg/pam.d/otpgate-reauth" /etc/pam.d/otpgate-reauth 0644
put "$here/copyright" /usr/share/doc/otpgate/copyright 0644
install -d -m 0755 "$root/usr/share/man/man1"
for f in "$pkg"/man/*.1; do
  [ -e "$f" ] || continue
  gzip -9nc "$f" >"$root/usr/share/man/man1/$(basename "$f").gz"
  chmod 0644 "$root/usr/share/man/man1/$(basename "$f").gz"
done
for pair in "otpgate.bash:/usr/share/bash-completion/completions/otpgate" \
  "_otpgate:/usr/share/zsh/vendor-completions/_otpgate" \
  "otpgate.fish:/usr/share/fish/vendor_completions.d/otpgate.fish"; do
  src=$pkg/completions/${pair%%:*}
  if [ -e "$src" ]; then
    put "$src" "${pair#*:}" 0644
  else
    echo "$prog: note: $src is missing; the package goes without it"
  fi
done
# install -D may leave directories with the caller's umask.
find "$root" -type d -exec chmod 0755 {} +

for s in preinst postinst prerm postrm; do
  install -m 0755 "$here/$s" "$root/DEBIAN/$s"
done
printf '%s\n' /etc/otpgate/otpgate.toml /etc/pam.d/otpgate-reauth >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

# Shared-library dependencies of the binaries, as dpkg-shlibdeps sees them
# (it wants a debian/control to stand in).
depends=
if command -v dpkg-shlibdeps >/dev/null; then
  mkdir -p "$stage/src/debian"
  printf 'Source: otpgate\n\nPackage: otpgate\nArchitecture: any\n' >"$stage/src/debian/control"
  depends=$(cd "$stage/src" && dpkg-shlibdeps -O "$root/usr/sbin/otpgated" "$root/usr/bin/otpgate" \
    "$root$pam_dir/pam_otpgate.so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || depends=
fi
[ -n "$depends" ] || depends="libc6, libgcc-s1, libpam0g"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: otpgate
Version: $version
Architecture: $arch
Maintainer: $MAINTAINER
Installed-Size: $installed_size
Depends: $depends, dbus, libpam0g, libpam-runtime
Section: admin
Priority: optional
Homepage: $HOMEPAGE
Description: second factor (TOTP codes) for every PAM login
 otpgate adds a one-time code from an authenticator app (or a backup code)
 to logins through PAM: ssh, sudo, su, console. A small root daemon
 (otpgated) keeps the encrypted secrets and decides; the PAM module and the
 otpgate command talk to it over the system D-Bus.
 .
 The PAM profile is not enabled on installation: enrol first, then run
 "pam-auth-update --enable otpgate" while keeping a root shell open.
EOF
chmod 0644 "$root/DEBIAN/control"

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z |
  xargs -0 md5sum | sed 's|  \./|  |' >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums"

mkdir -p "$out_dir"
deb=$out_dir/otpgate_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"$compression" --build "$root" "$deb" >/dev/null
echo "$prog: wrote $deb"
