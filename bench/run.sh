#!/usr/bin/env bash
# otpgate against google-authenticator-libpam and pam_oath, through the real
# PAM library, on this machine. Run as root from anywhere:
#
#   bench/run.sh [--users 1000,10000] [--workers 1,4] [--seconds 10] [--quick]
#                [--fleet-users N,…|--no-fleet]
#
# --quick is --users 1000 --seconds 6. The fleet rows (two otpgated on one
# private PostgreSQL cluster) run at the smallest N unless --fleet-users
# names others or --no-fleet skips them. What it does (details in bench/README.md):
#   1. installs libpam-google-authenticator, libpam-oath, dbus-broker,
#      postgresql, strace (and what the build needs) when missing; on a
#      host that boots with systemd it asks you to install dbus-broker
#      yourself (Debian makes it the system bus from the next boot);
#   2. builds otpgated, pam_otpgate.so and the load generator in release
#      (target/release, or $CARGO_TARGET_DIR/release);
#   3. backs up /etc/passwd and /etc/shadow, adds the bench's system users
#      (otpgbn000000…) in one batch, and removes them again on exit, even
#      on failure or Ctrl-C (trap), then checks the files against the backup;
#   4. runs `otpgate-bench run`, which gives every module a syslog socket
#      at /dev/log (the host's, or a discarding listener it starts and
#      removes again, also on failure or Ctrl-C), and prints the table and
#      the targets.
set -euo pipefail
cd "$(dirname "$0")/.."

users=1000,10000
workers=1,4
seconds=10
fleet=smallest
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users="$2"; shift 2 ;;
    --users=*) users="${1#*=}"; shift ;;
    --workers) workers="$2"; shift 2 ;;
    --workers=*) workers="${1#*=}"; shift ;;
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --quick) users=1000; seconds=6; shift ;;
    --fleet-users) fleet="$2"; shift 2 ;;
    --fleet-users=*) fleet="${1#*=}"; shift ;;
    --no-fleet) fleet=none; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$users" =~ ^[0-9]+(,[0-9]+)*$ && "$workers" =~ ^[0-9]+(,[0-9]+)*$ && "$seconds" =~ ^[0-9]+$ ]]; then
  echo "bench/run.sh: --users and --workers take comma-separated numbers, --seconds a number" >&2
  exit 2
fi
if ! [[ "$fleet" =~ ^(smallest|none|[0-9]+(,[0-9]+)*)$ ]]; then
  echo "bench/run.sh: --fleet-users takes comma-separated numbers of users (among --users)" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "bench/run.sh: run as root (system users, otpgated, PAM modules reading root-only files)" >&2
  exit 1
fi

t_all=$(date +%s)
echo "bench/run.sh: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), $(nproc) cores; uptime:$(uptime | sed 's/.*up/ up/')"

packages=(
  libpam-google-authenticator libpam-oath   # the peers
  dbus-daemon dbus-broker                   # the private buses
  systemd                                   # systemd-socket-activate, to start dbus-broker-launch
  postgresql strace                         # the fleet rows' database, and counting its round trips
  libpam0g-dev build-essential pkg-config   # building against libpam
)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# Debian's dbus-broker package enables dbus-broker.service as dbus.service:
# on a host that boots with systemd, installing it changes the system bus
# from the next boot. Never do that behind the user's back.
if [ -d /run/systemd/system ] && ! installed dbus-broker; then
  echo "bench/run.sh: dbus-broker is not installed, and this host runs systemd: installing it would make it the system bus from the next boot. Install it yourself if you want that (apt-get install dbus-broker), or run the bench on a machine without systemd as PID 1." >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench/run.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

t=$(date +%s)
cargo build --release -p otpgated -p pam_otpgate -p otpgate-bench
echo "bench/run.sh: release build took $(( $(date +%s) - t )) s"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
bench="$target/release/otpgate-bench"
export OTPGATE_BIN_DIR="$target/release"

max=0
IFS=, read -r -a ns <<< "$users"
for n in "${ns[@]}"; do [ "$n" -gt "$max" ] && max=$n; done

backup=$(mktemp -d /var/tmp/otpgate-bench-etc.XXXXXX)
cp -p /etc/passwd /etc/shadow "$backup/"
export OTPGATE_BENCH_RECORD="$backup/record"
# The bench's files (state, secrets, google-authenticator's 100,000 files):
# under /tmp like the other modules' (the same ext4 here), removed on exit.
work=$(mktemp -d /tmp/otpgate-bench.XXXXXX)
# Traversable: google-authenticator reads each user's file as that user.
chmod 755 "$work"
export TMPDIR="$work"

# After an orchestrator killed with SIGKILL: its otpgated, dbus-daemon and
# dbus-broker-launch instances are still running (their command lines name
# files of this run only), and their directories are left.
stop_leftovers() {
  local opid=$1 p args
  for p in /proc/[0-9]*; do
    args=$( { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null) || continue
    case "$args" in
      *"$work/"*|*/run/otpgate-tests/otpgate-test-bus-"$opid"-*|*/run/otpgate-tests/otpgate-test-broker-"$opid"-*)
        kill -TERM "${p#/proc/}" 2>/dev/null && echo "bench/run.sh: stopped ${p#/proc/} (${args%% *}), left by the run" >&2 ;;
    esac
  done
  sleep 1
  rm -rf /run/otpgate-tests/otpgate-test-{bus,broker,bench-sockets}-"$opid"-*
}

restore() {
  local rc=$?
  trap - EXIT INT TERM
  local t0; t0=$(date +%s)
  # The syslog listener removes its own sockets; this is for the case where
  # it was killed too (SIGKILL of the whole group). Only what it recorded
  # as created, and only while it is the same inode. A run cut short
  # leaves its sockets' directories under /run/otpgate-tests (named with
  # the orchestrator's pid) and its files in $work.
  if [ -f "$backup/record" ]; then
    local kind path ino
    while read -r kind path ino; do
      if [ "$kind" = socket ] && [ -S "$path" ] && [ "$(stat -c %i "$path")" = "$ino" ]; then
        rm -f "$path" && echo "bench/run.sh: removed $path, left by the bench's syslog listener" >&2
      fi
    done < "$backup/record"
    while read -r kind path ino; do
      case "$kind" in
        dir) rmdir "$path" 2>/dev/null || true ;;
        pid) [[ "$path" =~ ^[0-9]+$ ]] && stop_leftovers "$path" ;;
      esac
    done < "$backup/record"
    rm -f "$backup/record"
  fi
  rm -rf "$work"
  if ! "$bench" users remove; then
    # The tool failed: drop the lines with grep instead (same lines, no lock).
    echo "bench/run.sh: otpgate-bench users remove failed; removing otpgbn* lines with grep" >&2
    for f in passwd shadow; do
      grep -v -E '^otpgbn[0-9]+:' "/etc/$f" > "/etc/.$f.otpgate-bench-restore" || true
      chown --reference="/etc/$f" "/etc/.$f.otpgate-bench-restore"
      chmod --reference="/etc/$f" "/etc/.$f.otpgate-bench-restore"
      mv "/etc/.$f.otpgate-bench-restore" "/etc/$f"
    done
  fi
  local same=1
  for f in passwd shadow; do cmp -s "/etc/$f" "$backup/$f" || same=0; done
  if [ "$same" = 1 ]; then
    echo "bench/run.sh: /etc/passwd and /etc/shadow are back to the backup ($(( $(date +%s) - t0 )) s)"
    rm -rf "$backup"
  else
    # Someone else (useradd in another test suite) changed them meanwhile:
    # their lines are kept; the backup stays for inspection.
    echo "bench/run.sh: no otpgbn* user is left, but /etc/passwd or /etc/shadow differ from the backup in $backup (changed by another program meanwhile?)" >&2
  fi
  echo "bench/run.sh: $(( $(date +%s) - t_all )) s in all; uptime:$(uptime | sed 's/.*up/ up/')"
  exit "$rc"
}
trap restore EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A run killed with SIGKILL leaves its users behind: clear them first.
"$bench" users remove >/dev/null
cmp -s /etc/passwd "$backup/passwd" || cp -p /etc/passwd /etc/shadow "$backup/"
"$bench" users add --count "$max"
min=$max
for n in "${ns[@]}"; do [ "$n" -lt "$min" ] && min=$n; done
fleet_args=()
case "$fleet" in
  none) ;;
  smallest) fleet_args=(--fleet-users "$min") ;;
  *) fleet_args=(--fleet-users "$fleet") ;;
esac
"$bench" run --users "$users" --workers "$workers" --seconds "$seconds" "${fleet_args[@]}"
