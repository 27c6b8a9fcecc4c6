#!/usr/bin/env bash
# Build the jinad image exactly from ./Dockerfile, also on a machine that reaches no image
# registry, and print its figures (build time, size, start time).
#
#   scripts/docker-image.sh [build] [TAG]   build TAG (default jinad); an engine this call
#                                           started is stopped again at the end
#   scripts/docker-image.sh engine          make sure an engine answers; print its DOCKER_HOST
#                                           (one this script starts stays up until stop-engine)
#   scripts/docker-image.sh stop-engine     stop the engine this script started, clean up after it
#
# Engine: the one DOCKER_HOST (or the default socket) names when it answers. Else, as root, the
# script starts a private dockerd of its own (installing Debian's docker.io when missing) with
# its socket, data and state under $JINAD_DOCKER_STATE (default /tmp/jinad-docker), no bridge
# and no iptables rules: jinad's containers use the host's network, so the engine need not touch
# the firewall. The FORWARD policy, ip_forward and bridge-nf-call-iptables are recorded before
# it starts and put back after it stops all the same.
#
# Base image: when the engine has no image of the Dockerfile's FROM name and cannot pull one
# (no registry reachable), the script makes a stand-in offline: Debian bookworm (Python 3.11,
# as python:3.11-slim) by debootstrap from this machine's Debian mirror, with a virtualenv at
# /usr/local (python and pip on PATH as in the official image) and this machine's CA bundle
# and pip settings (so pip inside `docker build` reaches the package index as here), imported
# under the FROM name. It says so. The engine keeps it: a second build in the same run reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${JINAD_DOCKER_STATE:-/tmp/jinad-docker}
OUR_SOCK=unix://$STATE/docker.sock
SUITE=bookworm                       # Debian's release with Python 3.11, as python:3.11-slim
OFFLINE_LABEL=org.jinad.offline-base # on a stand-in base image this script made

say() { echo "docker-image: $*" >&2; }
die() { say "$*"; exit 1; }

engine_answers() { docker info >/dev/null 2>&1; }

apt_install() {  # as root on Debian: install packages that are missing
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        die "$* missing, and only root can install them (apt-get install $*)"
    fi
    say "installing $* (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
}

firewall_state() {  # what dockerd may change: FORWARD policy, ip_forward, bridged traffic through iptables
    echo "forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1=="-P"{print $3; exit}')"
    echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)"
    echo "bridge_nf=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)"
}

restore_firewall() {
    [ -f "$STATE/firewall.before" ] || return 0
    local forward_policy="" ip_forward="" bridge_nf=""
    # shellcheck disable=SC1091  # written by firewall_state
    . "$STATE/firewall.before"
    local now
    now=$(iptables -S FORWARD 2>/dev/null | awk '$1=="-P"{print $3; exit}')
    if [ -n "$forward_policy" ] && [ "$now" != "$forward_policy" ]; then
        iptables -P FORWARD "$forward_policy" && say "FORWARD policy put back to $forward_policy (was $now)"
    fi
    if [ -n "$ip_forward" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$ip_forward" ]; then
        echo "$ip_forward" > /proc/sys/net/ipv4/ip_forward && say "ip_forward put back to $ip_forward"
    fi
    if [ -n "$bridge_nf" ] && [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] \
        && [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)" != "$bridge_nf" ]; then
        echo "$bridge_nf" > /proc/sys/net/bridge/bridge-nf-call-iptables && say "bridge-nf-call-iptables put back to $bridge_nf"
    fi
}

engine_up() {  # sets DOCKER_HOST to an engine that answers; STARTED=1 when this call started it
    STARTED=0
    if engine_answers; then return 0; fi
    export DOCKER_HOST=$OUR_SOCK
    if engine_answers; then return 0; fi  # ours, from an earlier `engine`
    [ "$(id -u)" = 0 ] || die "no Docker engine answers, and only root can start one"
    command -v dockerd >/dev/null || apt_install docker.io
    command -v docker >/dev/null || die "no docker client"
    mkdir -p "$STATE"
    [ -f "$STATE/firewall.before" ] || firewall_state > "$STATE/firewall.before"
    say "starting a private dockerd ($STATE; no bridge, no iptables rules)"
    nohup dockerd --host "$OUR_SOCK" --data-root "$STATE/data" --exec-root "$STATE/exec" \
        --pidfile "$STATE/dockerd.pid" --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        </dev/null >"$STATE/dockerd.log" 2>&1 &
    echo $! > "$STATE/started.pid"

    for _ in $(seq 120); do
        engine_answers && { STARTED=1; return 0; }
        kill -0 "$(cat "$STATE/started.pid")" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 20 "$STATE/dockerd.log" >&2 || true
    engine_down
    die "dockerd did not start (its log is above)"
}

engine_down() {  # stop the dockerd this script started (by its pid), then remove what it left
    local pid=""
    pid=$(cat "$STATE/started.pid" 2>/dev/null) || true
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        say "stopping the dockerd this script started (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    # Its containerd normally ends with it; if not, it is ours too: end it by its pid.
    local containerd
    containerd=$(cat "$STATE/exec/containerd/containerd.pid" 2>/dev/null) || true
    if [ -n "$containerd" ] && kill -0 "$containerd" 2>/dev/null; then
        kill -TERM "$containerd"; sleep 1; kill -0 "$containerd" 2>/dev/null && kill -KILL "$containerd"
    fi
    if [ -d "$STATE" ]; then
        # dockerd leaves its network namespace (and after a kill, overlays) mounted under its state.
        awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
        restore_firewall
        rm -rf "$STATE"
    fi
}

debian_mirror() {  # this machine's Debian mirror, from its apt sources
    local uri
    uri=$(awk 'BEGIN{RS=""} /(^|\n)Types:[^\n]*deb/ && !/-security/ {
                 if (match($0, /URIs:[ \t]*[^ \t\n]+/)) {s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit}}' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1=="deb" && !/-security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; exit}}' \
                /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

host_pip_conf() {  # this machine's pip settings that reach an index, for pip inside the image
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    python3 -m pip config list 2>/dev/null | sed -n "s/^[^.]*\.\([a-z-]*\)='\(.*\)'$/\1 \2/p" | while read -r key value; do
        case $key in
            default-timeout) key=timeout ;;
            index-url|extra-index-url|trusted-host|proxy|timeout|retries) ;;
            *) continue ;;
        esac
        # Folders and file:// indexes of this machine do not exist in the image.
        value=$(tr ' ' '\n' <<<"$value" | { grep -v -e '^file:' -e '^/' || true; } | tr '\n' ' ' | sed 's/ *$//')
        if [ -n "$value" ]; then echo "$key = $value"; fi
    done | awk -F' = ' '!seen[$1]++'  # the environment's value first, as pip takes it
}

host_ca_bundle() {
    local f
    for f in "$(python3 -m pip config get global.cert 2>/dev/null || true)" "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" \
             /etc/ssl/certs/ca-certificates.crt; do
        [ -n "$f" ] && [ -f "$f" ] && { echo "$f"; return; }
    done
    return 0
}

make_offline_base() {  # $1: the FROM name
    local from=$1 rootfs="$STATE/rootfs" mirror t0
    [ "$(id -u)" = 0 ] || die "no registry serves $from, and only root can make it offline (debootstrap)"
    command -v debootstrap >/dev/null || apt_install debootstrap
    mirror=$(debian_mirror)
    say "no registry serves $from: making a stand-in offline, Debian $SUITE by debootstrap from $mirror"
    t0=$(date +%s)
    rm -rf "$rootfs"
    mkdir -p "$STATE"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$rootfs" "$mirror" \
        >"$STATE/debootstrap.log" 2>&1 || { tail -n 20 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
    chroot "$rootfs" python3 -m venv /usr/local
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc \
        "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
    local bundle
    bundle=$(host_ca_bundle)
    if [ -n "$bundle" ]; then cp "$bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"; fi
    host_pip_conf > "$rootfs/etc/pip.conf"
    say "pip in the image: $(grep -v '^\[' "$rootfs/etc/pip.conf" | tr '\n' ';')"
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change "LABEL $OFFLINE_LABEL=debootstrap-$SUITE" \
        --change 'CMD ["python3"]' - "$from" >/dev/null
    rm -rf "$rootfs"
    say "imported the stand-in as $from in $(( $(date +%s) - t0 )) s"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_time() {  # $1: image. Seconds from `docker run` to GET / answering {}, on loopback
    local image=$1 port volume name t0 t1
    port=$(free_port)
    name=jinad-start-$$-$RANDOM
    volume=$name
    docker volume create "$volume" >/dev/null
    t0=$(date +%s.%N)
    docker run -d --name "$name" --network host -v "$volume:/home/jinad/.jinad" "$image" \
        --host 127.0.0.1 --port-expose "$port" >/dev/null
    for _ in $(seq 600); do
        [ "$(python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$port/', timeout=1).read().decode())" 2>/dev/null)" = "{}" ] && break
        sleep 0.05
    done
    t1=$(date +%s.%N)
    docker rm -f "$name" >/dev/null
    docker volume rm "$volume" >/dev/null
    python3 -c "print(f'{$t1 - $t0:.2f}')"
}

build() {
    local tag=${1:-jinad} from t0 t1 size
    from=$(awk 'toupper($1)=="FROM" {print $2; exit}' Dockerfile)
    if ! docker image inspect "$from" >/dev/null 2>&1 && ! docker pull -q "$from" >/dev/null 2>&1; then
        make_offline_base "$from"
    fi
    if [ -n "$(docker image inspect -f "{{index .Config.Labels \"$OFFLINE_LABEL\"}}" "$from" 2>/dev/null)" ]; then
        say "base $from: the offline stand-in (Debian $SUITE, Python 3.11), not the registry's image"
    fi
    # The classic builder where buildx is not installed (Debian's docker.io has none).
    docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
    local args=()
    for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
        if [ -n "${!v:-}" ]; then args+=(--build-arg "$v"); fi
    done
    say "building $tag from Dockerfile"
    t0=$(date +%s.%N)
    # The host's network: pip reaches the index as on this machine, and an engine without a bridge builds.
    docker build --network host "${args[@]}" -t "$tag" . >"${BUILD_LOG:-/dev/stderr}"
    t1=$(date +%s.%N)
    size=$(docker image inspect -f '{{.Size}}' "$tag")
    say "figures: build $(python3 -c "print(f'{$t1 - $t0:.0f}')") s; image $(( size / 1000000 )) MB; start to GET / {} $(start_time "$tag") s"
}

case ${1:-build} in
    engine)
        engine_up
        echo "${DOCKER_HOST:-unix:///var/run/docker.sock}"
        ;;
    stop-engine)
        engine_down
        ;;
    -h|--help)
        sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        [ "${1:-}" = build ] && shift
        engine_up
        if [ "$STARTED" = 1 ]; then trap engine_down EXIT; fi
        build "$@"
        ;;
esac
