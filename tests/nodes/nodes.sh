# nodes.sh - emulated cluster nodes on one Linux machine, for the multi-node rehearsal (source it; bash,
# root). Each node is a network namespace with its own address on a private bridge and, for every command
# run in it, its own UTS namespace carrying the node's hostname; the bridge lives in a "fabric" namespace
# of its own, so nothing is added to the host's network: no interface, route or address outside the
# namespaces this file creates (nodes_down removes them all, with every process still inside).
#
#   nodes_up N          nodes node0..node{N-1} at $NODES_NET.1 ..; exports NODES_NAMES, NODES_AGENT
#   node_exec I CMD...  runs CMD on node I (hostname nodeI, /etc/hosts naming every node, own network)
#   nodes_shape RATE [DELAY] shapes every node's link (tc: e.g. 500mbit 200us); "" removes it;
#                       NODES_SHAPING says what was applied
#   nodes_link_bytes I  bytes sent + received on node I's link so far
#   nodes_down          kills what runs in the namespaces, deletes them (and their veths), removes files
#
# Open MPI uses $NODES_AGENT as its rsh agent (--mca plm_rsh_agent): it enters the node's namespaces
# instead of ssh. Addresses are 10.213.0.0/24, reachable only from inside these namespaces.
# Like real nodes, each has a private /tmp (a bind mount inside the mount namespace of the command, gone
# with it) and shares the rest of the file system: put what all nodes must see outside /tmp (NODES_DIR
# is under /var/tmp). Node-private /tmp is not cosmetic: Slurm's PMIx plugin creates
# /tmp/spmix_appdir_<uid>_<job>.<step> on every node of a step and fails when nodes share /tmp.

NODES_NET=${NODES_NET:-10.213.0}
NODES_TAG=${NODES_TAG:-q$$}
NODES_N=0
NODES_DIR=""
NODES_LIB=$(realpath "${BASH_SOURCE[0]}")

nodes_ns() { echo "${NODES_TAG}n$1"; }
nodes_fabric() { echo "${NODES_TAG}f"; }

nodes_up() {
  local n=$1 i ns f
  command -v ip >/dev/null && command -v unshare >/dev/null || { echo "SKIP: ip (iproute2) or unshare missing"; return 77; }
  [ "$(id -u)" -eq 0 ] || { echo "SKIP: emulated nodes need root"; return 77; }
  NODES_DIR=$(mktemp -d /var/tmp/quorum-nodes.XXXXXX)
  f=$(nodes_fabric)
  [ -d /etc/netns ] && NODES_ETC_KEEP=1 || NODES_ETC_KEEP=0
  ip netns add "$f" 2>/dev/null || { echo "SKIP: cannot create network namespaces here"; rm -rf "$NODES_DIR"; return 77; }
  NODES_N=$n
  ip -n "$f" link set lo up
  ip -n "$f" link add br0 type bridge && ip -n "$f" link set br0 up || return 1
  NODES_NAMES=""
  for ((i = 0; i < n; i++)); do
    ns=$(nodes_ns "$i")
    ip netns add "$ns" || return 1
    ip -n "$ns" link set lo up
    # one veth pair straight between the two namespaces: the host namespace never sees either end
    ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$f" || return 1
    ip -n "$ns" addr add "$NODES_NET.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$f" link set "p$i" master br0
    ip -n "$f" link set "p$i" up
    NODES_NAMES="$NODES_NAMES node$i"
    mkdir -p "$NODES_DIR/tmp/node$i" && chmod 1777 "$NODES_DIR/tmp/node$i"
  done
  NODES_NAMES=${NODES_NAMES# }
  # `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc/*: every node resolves every node's name.
  for ((i = 0; i < n; i++)); do
    ns=$(nodes_ns "$i")
    mkdir -p "/etc/netns/$ns"
    { echo "127.0.0.1 localhost"
      for ((j = 0; j < n; j++)); do echo "$NODES_NET.$((j + 1)) node$j"; done; } >"/etc/netns/$ns/hosts"
  done
  # the rsh agent: "agent HOST CMD..." as Open MPI calls ssh (CMD is one shell command line): node_exec
  NODES_AGENT=$NODES_DIR/agent
  cat >"$NODES_AGENT" <<AGENT
#!/bin/bash
source "$NODES_LIB"
NODES_TAG=$NODES_TAG NODES_DIR=$NODES_DIR
host=\$1; shift
case "\$host" in node[0-9]*) ;; *) echo "nodes agent: unknown host \$host" >&2; exit 255 ;; esac
node_exec "\${host#node}" /bin/bash -c "\$*"
AGENT
  chmod +x "$NODES_AGENT"
  export NODES_NAMES NODES_AGENT
  # every node reaches every other one (a bridge that forwards nothing fails here, not in MPI)
  for ((i = 1; i < n; i++)); do
    # port 1 is closed: "connection refused" at once means reachable; unreachable would time out
    timeout 5 ip netns exec "$(nodes_ns 0)" bash -c "exec 3<>/dev/tcp/$NODES_NET.$((i + 1))/1" 2>/dev/null
    [ $? -ne 124 ] || { echo "FAIL: node0 cannot reach node$i"; return 1; }
  done
  return 0
}

node_exec() {
  local i=$1; shift
  ip netns exec "$(nodes_ns "$i")" unshare --uts /bin/bash -c \
    'hostname "$0" && mount --bind "$1/tmp/$0" /tmp && shift && exec "$@"' "node$i" "$NODES_DIR" "$@"
}

nodes_shape() {
  local rate=$1 delay=${2:-} i ns
  NODES_SHAPING=none
  for ((i = 0; i < NODES_N; i++)); do
    ns=$(nodes_ns "$i")
    ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true # none yet
    [ -n "$rate" ] || continue
    # netem models latency too; kernels without sch_netem (seen: a 6.18 sandbox kernel) get a token
    # bucket (tbf) that limits bandwidth only, and NODES_SHAPING says so.
    if [ -n "$delay" ] && ip netns exec "$ns" tc qdisc add dev eth0 root netem delay "$delay" rate "$rate" limit 100000 2>/dev/null; then
      NODES_SHAPING="netem rate $rate delay $delay"
    else
      ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 500ms || return 1
      NODES_SHAPING="tbf rate $rate (no added latency${delay:+: netem unavailable})"
    fi
  done
}

nodes_link_bytes() {
  local ns
  ns=$(nodes_ns "$1")
  echo $(($(ip netns exec "$ns" cat /sys/class/net/eth0/statistics/rx_bytes) + \
          $(ip netns exec "$ns" cat /sys/class/net/eth0/statistics/tx_bytes)))
}

nodes_down() {
  local i ns p
  for ((i = 0; i < NODES_N; i++)); do
    ns=$(nodes_ns "$i")
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
  done
  sleep 0.3
  for ((i = 0; i < NODES_N; i++)); do
    ns=$(nodes_ns "$i")
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  ip netns del "$(nodes_fabric)" 2>/dev/null
  [ "${NODES_ETC_KEEP:-1}" = 1 ] || rmdir /etc/netns 2>/dev/null
  [ -n "$NODES_DIR" ] && rm -rf "$NODES_DIR"
  NODES_N=0 NODES_DIR=""
}

# Prints what this file's namespaces left behind (nothing, after nodes_down).
nodes_leftovers() {
  ip netns list 2>/dev/null | grep -E "^${NODES_TAG}[nf]" || true
  ls -d /etc/netns/"${NODES_TAG}"* 2>/dev/null || true
}
