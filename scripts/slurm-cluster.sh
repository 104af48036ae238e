#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying the SlurmProvider and for its tests.
#
#   scripts/slurm-cluster.sh install         apt-get Debian's slurmctld, slurmd, slurm-client, munge
#   eval "$(scripts/slurm-cluster.sh start)"  start munged (if needed), slurmctld and slurmd;
#                                            prints "export SLURM_CONF=DIR/slurm.conf"
#   scripts/slurm-cluster.sh status          sinfo and squeue of the cluster
#   scripts/slurm-cluster.sh stop            scontrol shutdown; stops munged if this script started it
#
# DIR is $FABRIC_SLURM_DIR (default /tmp/fabric-slurm): slurm.conf, state, spool, logs, pid
# files. It is world-readable, so jobs can read what is written there. The daemons listen
# on $FABRIC_SLURM_PORT and the next port (default 16817, 16818), not Slurm's defaults, so
# a site's own Slurm is never touched. "start" is idempotent: a running, answering cluster
# is left as it is. Everything is stopped by the pids this script recorded, never by name.
# Needs root (the daemons run as root, munged as the munge user).
set -euo pipefail

DIR=${FABRIC_SLURM_DIR:-/tmp/fabric-slurm}
PORT=${FABRIC_SLURM_PORT:-16817}
CONF=$DIR/slurm.conf
TIMEOUT=${FABRIC_SLURM_TIMEOUT:-30}

log() { echo "slurm-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

alive() {  # alive PIDFILE: the pid in PIDFILE is a running process
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for WHAT COMMAND...: poll COMMAND until it succeeds or TIMEOUT passes
    local what=$1 deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

node_ready() {
    SLURM_CONF=$CONF timeout 5 sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'
}

install_packages() {
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurmctld slurmd slurm-client munge
}

start_munge() {
    if timeout 5 munge -n >/dev/null 2>&1; then
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    [[ -s /etc/munge/munge.key ]] || die "no /etc/munge/munge.key (is munge installed?)"
    runuser -u munge -- /usr/sbin/munged
    wait_for munged timeout 5 munge -n || die "munged did not start (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$DIR/munged.pid"  # started here: "stop" stops it
}

write_conf() {
    local host
    host=$(hostname)
    cat >"$CONF" <<EOF
ClusterName=fabrictest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=600
NodeName=$host CPUs=8 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

stop_cluster() {
    if alive "$DIR/slurmctld.pid" || alive "$DIR/slurmd.pid"; then
        SLURM_CONF=$CONF timeout 10 scontrol shutdown >/dev/null 2>&1 || true
        local pidfile
        for pidfile in "$DIR/slurmctld.pid" "$DIR/slurmd.pid"; do
            if ! wait_for "${pidfile##*/}" bash -c "! kill -0 \$(cat '$pidfile') 2>/dev/null"; then
                log "$(basename "$pidfile" .pid) did not stop: killing it"
                kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
            fi
        done
    fi
    rm -f "$DIR/slurmctld.pid" "$DIR/slurmd.pid"
    if alive "$DIR/munged.pid"; then
        kill "$(cat "$DIR/munged.pid")" 2>/dev/null || true
    fi
    rm -f "$DIR/munged.pid"
}

start_cluster() {
    for command in slurmctld slurmd sinfo munged; do
        command -v "$command" >/dev/null || [[ -x /usr/sbin/$command ]] \
            || die "$command is not installed: run $0 install"
    done
    install -d -m 0755 "$DIR"
    if [[ -s $CONF ]] && alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && node_ready; then
        echo "export SLURM_CONF=$CONF"
        return
    fi
    stop_cluster
    install -d -m 0755 "$DIR/state" "$DIR/spool"
    start_munge
    write_conf
    export SLURM_CONF=$CONF
    # -c: a clean start, no jobs left over from an earlier run of this cluster.
    setsid slurmctld -D -c >"$DIR/ctld.out" 2>&1 </dev/null &
    setsid slurmd -D >"$DIR/slurmd.out" 2>&1 </dev/null &
    if ! wait_for "the node to be idle" node_ready; then
        log "the cluster did not come up within ${TIMEOUT} s; its logs:"
        tail -n 20 "$DIR/ctld.out" "$DIR/slurmd.out" "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
        stop_cluster
        exit 1
    fi
    echo "export SLURM_CONF=$CONF"
}

case ${1:-} in
    install) install_packages ;;
    start) start_cluster ;;
    stop) stop_cluster ;;
    status) SLURM_CONF=$CONF sinfo && SLURM_CONF=$CONF squeue ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
