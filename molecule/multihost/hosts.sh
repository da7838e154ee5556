#!/bin/sh
# The test hosts of the multihost scenario, made on this machine:
#
#   hosts.sh up NAME=ADDRESS ...     make (or keep) each host
#   hosts.sh down NAME ...           remove each host and all it holds
#   hosts.sh cut|mend NAME           take a host off the network / back on
#
# A host is a network namespace (maillab-NAME) on the bridge mlmh0
# (10.231.7.1/24 on this side, no route beyond it), with a private mount
# namespace where /etc/maillab and /var/lib/maillab are its own directories,
# its own Docker Engine (data under /var/lib/maillab-mh/NAME, the socket
# bound over /run/docker.sock, so modules find it where they look on any
# host) and its own sshd on ADDRESS:22 for the deploy user (config and keys
# from prepare.yml in /etc/ssh/maillab-mh). The hosts share this machine's
# files otherwise (packages, users, sudo), like hosts made from one image.
set -eu

BRIDGE=mlmh0
BRIDGE_ADDR=10.231.7.1/24
STATE=/var/lib/maillab-mh
RUN=/run/maillab-mh
SSHD_DIR=/etc/ssh/maillab-mh

log() { printf '[hosts] %s\n' "$*"; }

bridge_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    # Docker sets this machine's FORWARD policy to DROP, and bridged frames
    # pass iptables (br_netfilter): let the hosts talk to each other.
    iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null \
        || iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
}

# Runs inside the host's namespaces (network, then a private mount one).
host_init() {
    name=$1 addr=$2
    mount --make-rprivate /
    # sysfs of this network namespace (its interfaces), with this machine's
    # cgroup hierarchies moved under it for the engine.
    mkdir -p "$RUN/$name/cgroup"
    mount --rbind /sys/fs/cgroup "$RUN/$name/cgroup"
    mount -t sysfs sysfs /sys
    mount --move "$RUN/$name/cgroup" /sys/fs/cgroup
    mkdir -p "$STATE/$name/etc" "$STATE/$name/lib" "$STATE/$name/docker" "$RUN/$name" /etc/maillab /var/lib/maillab
    mount --bind "$STATE/$name/etc" /etc/maillab
    mount --bind "$STATE/$name/lib" /var/lib/maillab
    # Its own configuration file: this machine's daemon.json is its engine's.
    cat >"$STATE/$name/daemon.json" <<EOF
{"data-root": "$STATE/$name/docker", "exec-root": "$RUN/$name/exec",
 "pidfile": "$RUN/$name/dockerd.pid", "hosts": ["unix://$RUN/$name/docker.sock"],
 "storage-driver": "fuse-overlayfs", "mtu": 1400,
 "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}
EOF
    dockerd --config-file "$STATE/$name/daemon.json" >"$STATE/$name/dockerd.log" 2>&1 &
    i=0
    until [ -S "$RUN/$name/docker.sock" ] && docker -H "unix://$RUN/$name/docker.sock" info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 60 ]; then
            echo "dockerd of $name did not answer within 60 s" >&2
            tail -n 20 "$STATE/$name/dockerd.log" >&2
            exit 1
        fi
        sleep 1
    done
    [ -e /run/docker.sock ] || touch /run/docker.sock
    mount --bind "$RUN/$name/docker.sock" /run/docker.sock
    mkdir -p /run/sshd
    exec /usr/sbin/sshd -D -f "$SSHD_DIR/sshd_config" -o "ListenAddress=$addr:22" \
        -o "PidFile=$RUN/$name/sshd.pid" -E "$STATE/$name/sshd.log"
}

host_up() {
    name=$1 addr=$2
    ns=maillab-$name
    if [ -f "$RUN/$name/sshd.pid" ] && kill -0 "$(cat "$RUN/$name/sshd.pid")" 2>/dev/null; then
        log "$name ($addr): up"
        return 0
    fi
    ip netns add "$ns" 2>/dev/null || true
    if ! ip link show "mh-$name" >/dev/null 2>&1; then
        ip link add "mh-$name" type veth peer name eth0 netns "$ns"
    fi
    ip link set "mh-$name" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "$STATE/$name" "$RUN/$name"
    setsid nsenter --net="/run/netns/$ns" unshare --mount "$0" __init "$name" "$addr" \
        >"$STATE/$name/init.log" 2>&1 </dev/null &
    init=$!
    i=0
    until [ -f "$RUN/$name/sshd.pid" ] && kill -0 "$(cat "$RUN/$name/sshd.pid")" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 90 ] || ! kill -0 "$init" 2>/dev/null; then
            echo "host $name did not come up within 90 s:" >&2
            cat "$STATE/$name/init.log" >&2
            exit 1
        fi
        sleep 1
    done
    log "$name ($addr): started"
}

host_down() {
    name=$1
    ns=maillab-$name
    if [ -f "$RUN/$name/sshd.pid" ]; then
        kill "$(cat "$RUN/$name/sshd.pid")" 2>/dev/null || true
    fi
    if [ -f "$RUN/$name/dockerd.pid" ]; then
        pid=$(cat "$RUN/$name/dockerd.pid")
        kill "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null || true
    fi
    # Whatever still runs in the namespace (a container's process Docker
    # could not stop) goes with it.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip link del "mh-$name" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    # fuse-overlayfs mounts left by a killed engine.
    grep " $STATE/$name/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "${STATE:?}/$name" "${RUN:?}/$name"
    log "$name: removed"
}

case "${1:-}" in
    __init)
        shift
        host_init "$@"
        ;;
    up)
        shift
        bridge_up
        for spec in "$@"; do host_up "${spec%%=*}" "${spec#*=}"; done
        ;;
    down)
        shift
        for name in "$@"; do host_down "$name"; done
        if ip link show "$BRIDGE" >/dev/null 2>&1 && [ -z "$(ls /sys/class/net/$BRIDGE/brif 2>/dev/null)" ]; then
            iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
            ip link del "$BRIDGE"
        fi
        ;;
    cut)
        ip link set "mh-$2" down
        log "$2: off the network"
        ;;
    mend)
        ip link set "mh-$2" master "$BRIDGE" up
        log "$2: back on the network"
        ;;
    *)
        echo "usage: $0 up NAME=ADDRESS ... | down NAME ... | cut NAME | mend NAME" >&2
        exit 2
        ;;
esac
