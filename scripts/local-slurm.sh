#!/usr/bin/env bash
# local-slurm.sh — a real one-node Slurm cluster on this machine, for hkd's grid tests and
# for trying `just grid …` under a scheduler without a cluster.
#
#   scripts/local-slurm.sh [start]   install (Debian: slurmctld slurmd slurm-client munge),
#                                    configure and start; wait until the node is idle
#   scripts/local-slurm.sh stop      cancel every job, stop the daemons this script started
#   scripts/local-slurm.sh status    say whether the cluster answers (exit 0 if it does)
#
# Idempotent: `start` on a running cluster only checks it; `start` after `stop` starts
# afresh. Needs root (or password-less sudo) and, the first time, Debian's apt repository.
# No systemd, no cgroups: the daemons are started directly and tracked by pid files.
#
# The node has no GPU on purpose: a job asking for `--gres=gpu:N` is refused at submit
# (EnforcePartLimits=ALL), which hkd's tests rely on.
#
# Knobs (environment):
#   HKD_SLURM_STATE    pid and marker files        (default /tmp/hkd-local-slurm)
#   HKD_SLURM_TIMEOUT  seconds to wait for the node (default 60)
set -euo pipefail
export LC_ALL=C

STATE=${HKD_SLURM_STATE:-/tmp/hkd-local-slurm}
TIMEOUT=${HKD_SLURM_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
MARK="# hkd local-slurm.sh: generated, one node on loopback"
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm

say() { printf '[local-slurm] %s\n' "$*"; }
fail() { printf '[local-slurm] ERROR: %s\n' "$*" >&2; exit 1; }

# Re-run as root through sudo when possible.
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n -E "$0" "$@"
  fi
  fail "needs root (or password-less sudo) to install and start slurmctld/slurmd/munged"
fi

# `running PIDFILE NAME`: the pid in PIDFILE is alive and its command is NAME.
running() {
  local pid
  pid=$( [ -s "$1" ] && tr -dc '0-9' < "$1" || true)
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}
pid_in() { tr -dc '0-9' < "$1"; }

node_state() { sinfo -h -o '%T' 2>/dev/null | head -n1 || true; }
cluster_answers() { case "$(node_state)" in idle*|mixed*|allocated*|completing*) return 0 ;; *) return 1 ;; esac; }

cmd_status() {
  if cluster_answers; then
    say "up: $(sinfo -h -o '%P %a %D %T %N' | head -n1)"
    return 0
  fi
  say "down (sinfo: $(sinfo -h 2>&1 | head -n1 || true))"
  return 1
}

install_packages() {
  local need=() b
  for b in slurmctld slurmd sbatch munged; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || need+=("$b")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || fail "missing ${need[*]} and no apt-get: install Slurm and munge by hand"
  say "installing slurmctld slurmd slurm-client munge (missing: ${need[*]})"
  # Keep the packages' maintainer scripts from starting daemons on their own.
  local policy_added=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
  [ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
  say "installed $(dpkg-query -W -f='${Package} ${Version}; ' slurmctld slurmd slurm-client munge)"
}

start_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
  install -d -o munge -g munge -m 0711 /var/lib/munge
  install -d -o munge -g munge -m 0755 /run/munge   # a missing /run/munge is the usual failure
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile=/etc/munge/munge.key --force
    else
      head -c 1024 /dev/urandom > /etc/munge/munge.key
    fi
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0600 /etc/munge/munge.key
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
  local i
  for i in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munged did not answer; see /var/log/munge/munged.log"
  tr -dc '0-9' < /run/munge/munged.pid > "$STATE/munged.pid"
}

write_config() {
  local host hw
  host=$(hostname -s 2>/dev/null || uname -n)
  host=${host%%.*}
  getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >> /etc/hosts
  hw=$(slurmd -C | head -n1)                       # NodeName=x CPUs=2 … RealMemory=…
  case "$hw" in NodeName=*) ;; *) fail "slurmd -C printed: $hw" ;; esac
  hw="NodeName=$host ${hw#NodeName=* }"
  mkdir -p /etc/slurm "$CTLD_SPOOL" "$SLURMD_SPOOL" "$LOGS"
  local new
  new=$(cat <<EOF
$MARK
ClusterName=hkdlocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no systemd, no cgroups on this machine
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# several one-CPU jobs side by side; without DefMemPerCPU each job takes all memory
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# start batch jobs at once; cancel jobs whose dependency can never be met
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
# refuse impossible requests (a GPU here) at submit instead of pending forever
EnforcePartLimits=ALL
MaxArraySize=10001
ReturnToService=2
MailProg=/bin/true
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
$hw NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
  if [ -f "$CONF" ] && ! head -n1 "$CONF" | grep -qxF "$MARK"; then
    fail "$CONF exists and was not written by this script: refusing to replace a real cluster's config"
  fi
  if [ "$(cat "$CONF" 2>/dev/null)" != "$new" ]; then
    printf '%s\n' "$new" > "$CONF"
    say "wrote $CONF"
    # daemons running with an older config must restart
    stop_daemons slurmd slurmctld
  fi
}

start_daemon() { # NAME PIDFILE
  local name=$1 pidfile=$2 i
  running "$pidfile" "$name" && { pid_in "$pidfile" > "$STATE/$name.pid"; return 0; }
  say "starting $name"
  "/usr/sbin/$name" || fail "$name did not start; see $LOGS/$name.log"
  for i in $(seq 50); do running "$pidfile" "$name" && break; sleep 0.1; done
  running "$pidfile" "$name" || fail "$name is not running; see $LOGS/$name.log"
  pid_in "$pidfile" > "$STATE/$name.pid"
}

stop_daemons() { # NAME… : only daemons whose pid file this script wrote
  local name pid i
  for name in "$@"; do
    running "$STATE/$name.pid" "$name" || { rm -f "$STATE/$name.pid"; continue; }
    pid=$(pid_in "$STATE/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do [ -r "/proc/$pid/comm" ] || break; sleep 0.1; done
    if [ -r "/proc/$pid/comm" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$STATE/$name.pid"
    say "stopped $name ($pid)"
  done
}

cmd_start() {
  mkdir -p "$STATE"
  if cluster_answers && ! head -n1 "$CONF" 2>/dev/null | grep -qxF "$MARK"; then
    say "a Slurm cluster not started by this script already answers; using it"
    cmd_status
    return 0
  fi
  install_packages
  start_munge
  write_config
  if ! running /run/slurmctld.pid slurmctld; then
    rm -rf "${CTLD_SPOOL:?}"/*   # forget jobs of an earlier life
  fi
  start_daemon slurmctld /run/slurmctld.pid
  start_daemon slurmd /run/slurmd.pid
  local deadline state
  deadline=$(( $(date +%s) + TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(node_state)
    case "$state" in
      idle*|mixed*|allocated*) cmd_status; return 0 ;;
      down*|drain*|inval*) scontrol update NodeName="$(sinfo -h -o '%N' | head -n1)" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
  done
  tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
  fail "node not ready after ${TIMEOUT}s (state: '${state:-none}')"
}

cmd_stop() {
  if cluster_answers; then
    local jobs
    jobs=$(squeue -h -o '%A' | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      say "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      local i
      for i in $(seq 50); do [ -z "$(squeue -h -t R,CG 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  stop_daemons slurmd slurmctld munged
}

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) fail "usage: $0 [start|stop|status]" ;;
esac
