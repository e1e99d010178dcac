#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine, as root:
#   installs what the tests need, checks formatting and lints, builds the
#   workspace and runs every test (unit tests and the end-to-end tests that
#   drive a private dbus-daemon, the real otpgated and the real PAM stack).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "tests/run.sh: run as root (the end-to-end tests create users, start sshd and use sudo)" >&2
  exit 1
fi

# Debian packages the tests use, and why:
packages=(
  build-essential pkg-config   # cc for crates with C parts
  libpam0g-dev                 # libpam for the module and the test host
  libclang-dev                 # bindgen, for the daemon's libpam bindings (pam-client)
  dbus-daemon                  # the private test buses
  oathtool                     # codes computed independently of our TOTP code
  pamtester                    # the real PAM library from the outside
  sudo openssh-server openssh-client util-linux passwd login  # real sudo, sshd, su, setpriv, useradd
  zbar-tools librsvg2-bin      # decode the enrolment QR codes back to the URI
  libpam-google-authenticator  # make a real ~/.google_authenticator for the import test
  dbus systemd strace dpkg-dev libpam-runtime  # the packaging tests: system bus, systemd-analyze/-creds, the sandbox trace, the .deb
  vlock tmux                   # a real console locker (PAM service vlock) and login(1), on tmux pseudo-terminals
  postgresql                   # fleet mode: a private PostgreSQL cluster per test (initdb, postgres, pg_basebackup, pg_dump)
  openssl                      # the test CA and the database server's certificate
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

# sshd -T (doctor's cross-check) and the sshd tests need sshd's
# privilege-separation directory, which only the sshd service creates and a
# fresh boot without it lacks.
install -d -m 0755 /run/sshd

# Incremental caches only help the next edit-compile cycle; in a one-shot run
# they are a gigabyte of disk for nothing.
export CARGO_INCREMENTAL=0
echo "tests/run.sh: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free on the build disk"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins --lib
# Keep the test output for the summary line at the very end.
test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
cargo test --workspace --no-fail-fast 2>&1 | tee "$test_log"

# A short fuzzing run of every fuzz target (fuzz/run.sh SECONDS); set
# OTPGATE_FUZZ=0 to skip it, OTPGATE_FUZZ_SECONDS for longer.
if [ "${OTPGATE_FUZZ:-1}" != 0 ]; then
  fuzz/run.sh "${OTPGATE_FUZZ_SECONDS:-5}"
fi

# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "otpgate: %d passed, %d failed\n", p, f }' "$test_log"
