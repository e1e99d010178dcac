#!/usr/bin/env bash
# otpgate's installer, for a Debian machine, as root:
#
#   ./packaging/install.sh                       build, install, start (re-run to upgrade)
#   ./packaging/install.sh --uninstall           stop and remove; keep /etc/otpgate and /var/lib/otpgate
#   ./packaging/install.sh --uninstall --purge   also delete the configuration, key, state and log
#
# It installs missing Debian packages it needs (apt-get), builds the
# workspace with `cargo build --release --workspace` (Rust's cargo must
# already be installed, e.g. with rustup), installs the daemon, the CLI, the
# PAM module, the D-Bus policy and activation file, the systemd unit, a
# commented /etc/otpgate/otpgate.toml (never overwritten), the master key
# (created once, never overwritten), man pages and shell completions. Then it
# starts the daemon: with systemd where systemd is PID 1, else in the
# background with a pid file (/run/otpgated.pid), starting a system D-Bus if
# none runs. It never turns the second factor on for any login: that is a
# separate, deliberate step (see the README).
#
# For tests and packagers only: OTPGATE_BIN_DIR=DIR installs the prebuilt
# otpgated, otpgate and libpam_otpgate.so from DIR instead of building.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
prog=install.sh

# The real system bus, whatever the calling shell points at.
unset DBUS_SYSTEM_BUS_ADDRESS
export DEBIAN_FRONTEND=noninteractive
umask 022

SBIN=/usr/sbin
BIN=/usr/bin
CTL_DIR=/usr/libexec/otpgate
CTL=$CTL_DIR/otpgated-ctl
DBUS_POLICY_DIR=/usr/share/dbus-1/system.d
DBUS_SERVICE_DIR=/usr/share/dbus-1/system-services
UNIT_DIR=/lib/systemd/system
PAM_CONFIGS=/usr/share/pam-configs
MAN_DIR=/usr/share/man/man1
BASH_COMPL=/usr/share/bash-completion/completions/otpgate
ZSH_COMPL=/usr/share/zsh/vendor-completions/_otpgate
FISH_COMPL=/usr/share/fish/vendor_completions.d/otpgate.fish
SHARE=/usr/share/otpgate
MANIFEST=$SHARE/install-manifest
CONF_DIR=/etc/otpgate
CONF=$CONF_DIR/otpgate.toml
STATE=/var/lib/otpgate
LOG=/var/log/otpgated.log
PAM_D=/etc/pam.d
REAUTH_PAM=$PAM_D/otpgate-reauth

say() { echo "$prog: $*"; }
die() {
  echo "$prog: $*" >&2
  exit 1
}

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

systemd_running() { [ -d /run/systemd/system ]; }

uninstall=no
purge=no
for arg in "$@"; do
  case "$arg" in
    --uninstall) uninstall=yes ;;
    --purge) purge=yes ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
done
[ "$purge" = no ] || [ "$uninstall" = yes ] || die "--purge goes with --uninstall"

[ "$(id -u)" = 0 ] || die "run as root (it installs into /usr, /etc and /var and starts a system service)"

if dpkg-query -W -f='${Status}' otpgate 2>/dev/null | grep -q 'install ok installed'; then
  die "the otpgate Debian package is installed; manage it with dpkg/apt (dpkg -r otpgate) instead of this script"
fi

pam_dir() { "$here/pam-dir.sh"; }

# Lines in /etc/pam.d that load the installed module (not test modules
# elsewhere, not comments).
pam_references() {
  local dir=$1
  awk -v full="$dir/pam_otpgate.so" '
    /^[[:space:]]*#/ { next }
    { for (i = 1; i <= NF; i++) if ($i == "pam_otpgate.so" || $i == full) { print FILENAME ": " $0; next } }
  ' /etc/pam.d/* 2>/dev/null || true
}

# ---- uninstall ---------------------------------------------------------------

do_uninstall() {
  local dir refs f
  dir=$(pam_dir)
  # A PAM stack naming a module that is gone fails every login through it:
  # take the pam-auth-update profile out first, and refuse while any other
  # service file still loads the module.
  if [ -e "$PAM_CONFIGS/otpgate" ] && command -v pam-auth-update >/dev/null; then
    pam-auth-update --package --remove otpgate
  fi
  refs=$(pam_references "$dir")
  if [ -n "$refs" ]; then
    echo "$prog: these PAM service files still load pam_otpgate.so; remove those lines first" >&2
    echo "$prog: (removing the module under them would make those logins fail):" >&2
    echo "$refs" | sed 's/^/  /' >&2
    exit 1
  fi

  if systemd_running; then
    systemctl disable --now otpgated.service 2>/dev/null || true
  elif [ -x "$CTL" ]; then
    "$CTL" stop
  elif [ -x "$here/otpgated-ctl" ]; then
    "$here/otpgated-ctl" stop
  fi

  if [ -r "$MANIFEST" ]; then
    while IFS= read -r f; do
      case "$f" in /*) rm -f -- "$f" ;; esac
    done <"$MANIFEST"
  fi
  # Also what a manifest-less (interrupted) install may have left.
  rm -f -- "$SBIN/otpgated" "$BIN/otpgate" "$dir/pam_otpgate.so" \
    "$DBUS_POLICY_DIR/org.otpgate.Otpgate1.conf" "$DBUS_SERVICE_DIR/org.otpgate.Otpgate1.service" \
    "$UNIT_DIR/otpgated.service" "$PAM_CONFIGS/otpgate" "$CTL" \
    "$BASH_COMPL" "$ZSH_COMPL" "$FISH_COMPL" "$MANIFEST"
  rmdir --ignore-fail-on-non-empty "$CTL_DIR" "$SHARE" 2>/dev/null || true

  if systemd_running; then
    systemctl daemon-reload
    systemctl reload dbus.service 2>/dev/null || true
  elif dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.ReloadConfig >/dev/null 2>&1; then
    :
  fi

  # The password check's PAM service: like the configuration, an
  # administrator may have edited it; kept unless unchanged or purged.
  if [ "$purge" = yes ] || cmp -s "$here/pam.d/otpgate-reauth" "$REAUTH_PAM"; then
    rm -f -- "$REAUTH_PAM"
  fi

  if [ "$purge" = yes ]; then
    rm -rf -- "$STATE" "$CONF_DIR"
    rm -f -- "$LOG" /run/otpgated.pid
    say "removed otpgate, its configuration, master key, state and log"
  else
    say "removed otpgate; kept $CONF_DIR (configuration, master key) and $STATE (enrolments)"
    say "delete them too with: $0 --uninstall --purge"
  fi
}

# ---- install -----------------------------------------------------------------

ensure_packages() {
  local missing=() p
  local want=(dbus libpam-runtime libpam-modules)
  # libclang-dev: the daemon's libpam bindings (pam-client) are generated at build time.
  [ -n "${OTPGATE_BIN_DIR:-}" ] || want+=(build-essential pkg-config libpam0g-dev libclang-dev)
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  fi
}

find_cargo() {
  if command -v cargo >/dev/null; then
    command -v cargo
  elif [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    echo "${HOME:-/root}/.cargo/bin/cargo"
  else
    return 1
  fi
}

build() {
  local cargo
  if ! cargo=$(find_cargo); then
    cat >&2 <<EOF
$prog: Rust's cargo is not installed (or not on root's PATH).
$prog: Install a current Rust (1.89 or newer) with rustup, as root:
$prog:   curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
$prog:   . "\$HOME/.cargo/env"
$prog: then run this script again. (Debian 12's own cargo/rustc 1.63 is too old.)
EOF
    exit 1
  fi
  say "building: cargo build --release --workspace (several minutes on a small machine)"
  # The default target directory inside the repository, wherever the
  # caller's environment points.
  (cd "$repo" && env -u CARGO_TARGET_DIR "$cargo" build --release --workspace)
}

# install_file SRC DEST MODE: atomic replace (a running sshd has the PAM
# module mapped; overwriting it in place would crash it), recorded in the
# manifest.
install_file() {
  local src=$1 dest=$2 mode=$3
  install -d -m 0755 "$(dirname "$dest")"
  install -m "$mode" -o root -g root "$src" "$dest.otpgate-new"
  mv -f "$dest.otpgate-new" "$dest"
  echo "$dest" >>"$MANIFEST.new"
}

install_man() {
  local src=$1 name tmp
  name=$(basename "$src")
  tmp=$(mktemp)
  gzip -9nc "$src" >"$tmp"
  install_file "$tmp" "$MAN_DIR/$name.gz" 0644
  rm -f "$tmp"
}

do_install() {
  local bin dir f
  ensure_packages
  getent passwd messagebus >/dev/null ||
    die "the messagebus user is missing (it comes with the dbus package): apt-get install --reinstall dbus"

  if [ -n "${OTPGATE_BIN_DIR:-}" ]; then
    bin=$OTPGATE_BIN_DIR
    say "installing prebuilt binaries from $bin (OTPGATE_BIN_DIR)"
  else
    build
    bin=$repo/target/release
  fi
  for f in otpgated otpgate libpam_otpgate.so; do
    [ -f "$bin/$f" ] || die "$bin/$f is missing"
  done
  dir=$(pam_dir)

  install -d -m 0755 "$SHARE"
  : >"$MANIFEST.new"
  install_file "$bin/otpgated" "$SBIN/otpgated" 0755
  install_file "$bin/otpgate" "$BIN/otpgate" 0755
  install_file "$bin/libpam_otpgate.so" "$dir/pam_otpgate.so" 0644
  install_file "$here/otpgated-ctl" "$CTL" 0755
  install_file "$here/dbus/org.otpgate.Otpgate1.conf" "$DBUS_POLICY_DIR/org.otpgate.Otpgate1.conf" 0644
  install_file "$here/dbus/org.otpgate.Otpgate1.service" "$DBUS_SERVICE_DIR/org.otpgate.Otpgate1.service" 0644
  install_file "$here/otpgated.service" "$UNIT_DIR/otpgated.service" 0644
  install_file "$here/pam-configs/otpgate" "$PAM_CONFIGS/otpgate" 0644

  local n=0
  for f in "$here"/man/*.1; do
    [ -e "$f" ] || continue
    install_man "$f"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || say "note: no man pages in packaging/man/ yet; skipped"
  local pair src dest
  for pair in "otpgate.bash:$BASH_COMPL" "_otpgate:$ZSH_COMPL" "otpgate.fish:$FISH_COMPL"; do
    src=$here/completions/${pair%%:*}
    dest=${pair#*:}
    if [ -e "$src" ]; then
      install_file "$src" "$dest" 0644
    else
      say "note: $src is missing; skipped that shell completion"
    fi
  done
  echo "$MANIFEST" >>"$MANIFEST.new"
  mv -f "$MANIFEST.new" "$MANIFEST"
  chmod 0644 "$MANIFEST"

  install -d -m 0755 -o root -g root "$CONF_DIR"
  if [ -e "$CONF" ]; then
    say "kept the existing $CONF"
  else
    install -m 0644 -o root -g root "$here/otpgate.toml" "$CONF"
    say "wrote $CONF (every setting at its default, commented)"
  fi
  if [ -e "$REAUTH_PAM" ]; then
    say "kept the existing $REAUTH_PAM"
  else
    install -m 0644 -o root -g root "$here/pam.d/otpgate-reauth" "$REAUTH_PAM"
    say "wrote $REAUTH_PAM (the password check for [self_service] reauth = \"password+code\")"
  fi
  "$CTL" prepare
  "$SBIN/otpgated" --check-config --config "$CONF" >/dev/null ||
    die "$CONF is invalid (see above); fix it and run $0 again"

  if systemd_running; then
    systemctl daemon-reload
    "$CTL" reload-bus
    systemctl enable otpgated.service
    # restart, not start: a re-run is an upgrade and must load the new binary.
    systemctl restart otpgated.service
    systemctl is-active --quiet otpgated.service || die "otpgated did not start: journalctl -u otpgated"
    say "otpgated is running under systemd (systemctl status otpgated)"
    stop_hint="systemctl stop otpgated"
  else
    "$CTL" restart
    stop_hint="$CTL stop    (or: kill \$(cat /run/otpgated.pid))"
  fi

  cat <<EOF

otpgate is installed and its daemon is running.
  Enrol (as the user who will log in):  otpgate enroll
  Turn the second factor on for logins: see the README, and keep a root
                                        shell open while you test.
  Stop the daemon:                      $stop_hint
  Uninstall:                            $0 --uninstall [--purge]
EOF
}

if [ "$uninstall" = yes ]; then
  do_uninstall
else
  do_install
fi
