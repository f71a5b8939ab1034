#!/usr/bin/env python3
"""TEST DOUBLE of the `snap` and `microk8s` commands, for the fake-cli molecule scenario.

The snap store and MicroK8s cannot run in this project's CI containers (no snap store,
no squashfs mounts), so this stand-in answers the commands roles/microk8s runs, in output
formats RECONSTRUCTED from the upstream source, not captured from a live MicroK8s (the same
formats as tests/unit/samples/microk8s/, whose headers name their sources: `microk8s status
--format yaml` from canonical/microk8s scripts/wrappers/status.py print_yaml, `add-node
--format json` from scripts/wrappers/add_token.py, `snap list` from snapd's docs), and keeps
state in files: per node under /var/lib/fake-microk8s,
per cluster under /fake-cluster (a folder shared by the scenario's containers). It lets
the role's task logic (offline install, hold, addon plan, joins, kubeconfigs, reset,
idempotence) run for real; it proves nothing about MicroK8s itself: the microk8s-real
scenario and `make verify` on real hosts do that.
Installed as /usr/local/bin/snap and /snap/bin/microk8s only: like snapd's, the microk8s command
is not on sudo's secure_path on Debian, so a role that calls a bare `microk8s` fails here too.

Upstream behaviours the roles' fixes depend on, each modelled after the file named:
- `snap list` with nothing installed: empty stdout, a sentence on stderr, exit 0; with a name
  that is not installed: "error: no matching snaps installed", exit 1 (snapd
  cmd/snap/cmd_list.go and its tests TestListEmpty / TestListEmptyWithQuery).
- Tracking: a store install tracks its --channel, a file install shows "-"; an explicit
  `snap refresh --channel=C microk8s` switches channel even while refreshes are held (snapd
  holds only gate automatic refreshes, https://snapcraft.io/docs/managing-updates, as the
  docs of community.general plugins/modules/snap.py repeat; that module runs
  `snap refresh --channel C` on a channel mismatch with state=present).
- A join killed half-way: the node is in dqlite but not in Kubernetes (a "pending" entry:
  listed by no `kubectl get nodes`), so `microk8s join` answers "already known to dqlite"
  (canonical/microk8s scripts/wrappers/join.py, the cluster agent's answer) and only
  `microk8s remove-node NAME --force` clears it (scripts/wrappers/remove_node.py).
- A stopped node: `microk8s stop` leaves var/lock/stopped.lock, and `microk8s status` (also
  with --wait-ready) then prints "microk8s is not running, try microk8s start" and exits 0
  (canonical/microk8s scripts/wrappers/common/utils.py exit_if_stopped;
  microk8s-resources/wrappers/microk8s-stop.wrapper); `microk8s start` removes the lock
  (microk8s-resources/wrappers/microk8s-start.wrapper).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path

STATE = Path("/var/lib/fake-microk8s")
ON_WORKER = "This MicroK8s deployment is acting as a node in a cluster."
CLUSTERS = Path("/fake-cluster")
LOCK = Path("/var/snap/microk8s/current/var/lock/clustered.lock")
STOPPED = Path("/var/snap/microk8s/current/var/lock/stopped.lock")
NOT_RUNNING = "microk8s is not running, try microk8s start"
ARGS = Path("/var/snap/microk8s/current/args")
ADDONS = {  # name -> enabled on a fresh install (MicroK8s 1.36 defaults)
    "cert-manager": False,
    "community": False,
    "dns": True,
    "ha-cluster": True,
    "helm": True,
    "helm3": True,
    "hostpath-storage": False,
    "ingress": False,
    "metallb": False,
    "metrics-server": False,
    "nvidia": False,
    "observability": False,
    "rbac": False,
    "registry": False,
}


def node_name() -> str:
    return socket.gethostname().lower()


def node_ip() -> str:
    return socket.gethostbyname(socket.gethostname())


def load(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def save(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def local() -> dict:
    return load(STATE / "node.json", {})


def cluster_file(owner: str) -> Path:
    return CLUSTERS / f"{owner}.json"


def my_cluster() -> Path:
    return cluster_file(local().get("member_of") or node_name())


def fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


# --------------------------------------------------------------------------- snap
def install(state: dict, tracking: str) -> None:
    state.update(installed=True, tracking=tracking, addons=dict(ADDONS))
    save(STATE / "node.json", state)
    (ARGS / "certs.d").mkdir(parents=True, exist_ok=True)
    env = ARGS / "containerd-env"
    if not env.exists():
        env.write_text("# fake containerd-env\nulimit -n 65536 || true\n")
    save(cluster_file(node_name()), {"owner_ip": node_ip(), "nodes": [{"name": node_name(), "ip": node_ip()}]})
    print("microk8s v1.36.0 installed")


def channel_arg(args: list[str]) -> str | None:
    """--channel=C or --channel C (community.general's snap module passes the latter)."""
    for i, a in enumerate(args):
        if a.startswith("--channel="):
            return a.split("=", 1)[1]
        if a == "--channel" and i + 1 < len(args):
            return args[i + 1]
    return None


def snap(args: list[str]) -> int:
    state = local()
    if args[:3] == ["wait", "system", "seed.loaded"]:
        return 0
    if args[:1] == ["list"]:
        names = [a for a in args[1:] if not a.startswith("-")]
        if not state.get("installed"):
            if names:
                return fail("error: no matching snaps installed")
            print("No snaps are installed yet. Try 'snap install hello-world'.", file=sys.stderr)
            return 0
        tracking = state.get("tracking", "-")
        version = f"v{tracking.split('/')[0]}.0" if tracking[:1].isdigit() else "v1.36.0"
        notes = "classic" + (",held" if state.get("held") else "")
        print("Name      Version   Rev   Tracking     Publisher   Notes")
        print(f"microk8s  {version:<9} x1    {tracking:<12} -           {notes}")
        return 0
    if args[:2] == ["set", "system"]:  # snapd system options (https://snapcraft.io/docs/system-options)
        state.setdefault("system", {}).update(a.split("=", 1) for a in args[2:])
        save(STATE / "node.json", state)
        return 0
    if args[:2] == ["get", "system"]:  # several keys: a Key/Value table (snapd cmd/snap/cmd_get.go)
        opts = state.get("system", {})
        missing = [k for k in args[2:] if k not in opts]
        if missing:
            return fail(f'error: snap "core" has no "{missing[0]}" configuration option')
        print("Key          Value")
        for key in args[2:]:
            print(f"{key:<12} {opts[key]}")
        return 0
    if args[:1] == ["version"]:  # snapd cmd/snap/cmd_version.go: "<name> <version>" lines
        print("snap    2.68.4\nsnapd   2.68.4\nseries  16\ndebian  12")
        return 0
    if args[:1] == ["info"]:  # snapd cmd/snap/cmd_info.go: YAML-like, "name:" first
        print(f"name:      {args[1]}\nsummary:   Kubernetes for workstations and appliances\npublisher: Canonical*")
        return 0
    channel = channel_arg(args)
    if args[:1] == ["install"] and "microk8s" in args[1:]:  # from the store (community.general.snap)
        if state.get("installed"):
            print("snap \"microk8s\" is already installed, see 'snap help refresh'")
            return 0
        install(state, channel or "latest/stable")
        return 0
    if args[:1] == ["refresh"] and "microk8s" in args[1:] and channel:
        if not state.get("installed"):
            return fail('error: snap "microk8s" is not installed')
        state["tracking"] = channel  # an explicit refresh ignores the hold
        save(STATE / "node.json", state)
        print(f"microk8s ({channel}) {channel.split('/')[0]} from Canonical* refreshed")
        return 0
    if args[:1] == ["ack"]:
        return 0 if Path(args[1]).exists() else fail(f"error: cannot read assertion file: open {args[1]}")
    if args[:1] == ["install"] and args[1].endswith(".snap"):
        if not Path(args[1]).exists():
            return fail(f'error: cannot open "{args[1]}"')
        if "microk8s" not in Path(args[1]).name:
            return 0  # a base snap
        install(state, "-")
        return 0
    if args[:2] == ["refresh", "--hold"]:
        state["held"] = True
        save(STATE / "node.json", state)
        print('General refreshes of "microk8s" held indefinitely')
        return 0
    if args[:2] == ["refresh", "--unhold"]:
        state["held"] = False
        save(STATE / "node.json", state)
        return 0
    if args[:1] == ["restart"]:
        return 0
    if args[:2] == ["remove", "--purge"]:
        save(STATE / "node.json", {})
        cluster_file(node_name()).unlink(missing_ok=True)
        return 0
    return fail(f"fake snap: unsupported arguments {args}", 64)


# --------------------------------------------------------------------------- microk8s
def print_status(state: dict) -> None:
    print("microk8s:")
    print("  running: True")
    print("high-availability:")
    print("  enabled: True")
    print("  nodes:")
    print(f"    - address: {node_ip()}:19001")
    print("      role: voter")
    print("addons:")
    addons = state["addons"]
    for wanted in (True, False):
        for name in sorted(n for n, on in addons.items() if on is wanted):
            print(f"  - name: {name}")
            print("    repository: core")
            print(f"    description: the {name} addon")
            print("    version: 1.0.0")
            print(f"    status: {'enabled' if wanted else 'disabled'}")


def node_list() -> dict:
    nodes = load(my_cluster(), {"nodes": []})["nodes"]
    items = []
    for node in (n for n in nodes if not n.get("pending")):  # pending: in dqlite, no kubelet yet
        role = "worker" if node.get("worker") else "controlplane"
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node["name"],
                    "labels": {
                        "microk8s.io/cluster": "true",
                        f"node.kubernetes.io/microk8s-{role}": f"microk8s-{role}",
                    },
                },
                "spec": {"unschedulable": True} if node.get("cordoned") else {},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": node["ip"]}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}


def microk8s(args: list[str]) -> int:
    state = local()
    if not state.get("installed"):
        return fail("microk8s: command not found", 127)
    worker = LOCK.exists()
    cmd = args[0] if args else ""
    if cmd == "stop":
        STOPPED.parent.mkdir(parents=True, exist_ok=True)
        STOPPED.touch()
        return 0
    if cmd == "start":
        STOPPED.unlink(missing_ok=True)
        return 0
    if cmd == "status" and STOPPED.exists():
        print(NOT_RUNNING)
        return 0
    if cmd == "status":
        if worker:
            print("This MicroK8s deployment is acting as a node in a cluster.\nPlease use the control plane node.")
            return 0
        if "--addon" in args:
            print("enabled" if state["addons"].get(args[args.index("--addon") + 1]) else "disabled")
            return 0
        print_status(state)
        return 0
    if cmd in ("enable", "disable"):
        # what the addon's helm and curl calls would be given
        state.setdefault("enable_proxy", []).append(os.environ.get("HTTPS_PROXY", ""))
        name = args[1].split(":")[0].split("/")[-1]
        if name not in state["addons"]:
            return fail(f"Addon {name} was not found in any repository", 1)
        want = cmd == "enable"
        if state["addons"][name] == want:
            print(f"Addon core/{name} is already {cmd}d")
            return 0
        state["addons"][name] = want
        save(STATE / "node.json", state)
        print(f"{'Enabled' if want else 'Disabled'} {name}")
        return 0
    if args[:2] == ["kubectl", "get"] and "nodes" in args:
        print(json.dumps(node_list(), indent=4))
        return 0
    if args[:2] in (["kubectl", "drain"], ["kubectl", "uncordon"]):  # kubectl's own messages
        data = load(my_cluster(), {"nodes": []})
        node = next((n for n in data["nodes"] if n["name"] == args[2]), None)
        if node is None:
            return fail(f'Error from server (NotFound): nodes "{args[2]}" not found')
        node["cordoned"] = args[1] == "drain"
        save(my_cluster(), data)
        print(f"node/{args[2]} cordoned\nnode/{args[2]} drained" if node["cordoned"] else f"node/{args[2]} uncordoned")
        return 0
    if cmd == "config":
        if worker:
            print(ON_WORKER + " Please use the microk8s config on the master.")
            return 0
        ip = node_ip()
        print(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: RkFLRQ==\n"
            f"    server: https://{ip}:16443\n  name: microk8s-cluster\ncontexts:\n- context:\n"
            "    cluster: microk8s-cluster\n    user: admin\n  name: microk8s\ncurrent-context: microk8s\n"
            "kind: Config\npreferences: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: RkFLRQ==\n"
            "    client-key-data: RkFLRQ==\n"
        )
        return 0
    if cmd == "add-node":
        if worker:
            print(ON_WORKER + " Please use the microk8s add-node on the master.")
            return 1
        token, check = secrets.token_hex(16), secrets.token_hex(6)
        tokens = load(STATE / "tokens.json", [])
        save(STATE / "tokens.json", [*tokens, token])
        print(json.dumps({"token": f"{token}/{check}", "urls": [f"{node_ip()}:25000/{token}/{check}"]}, indent=2))
        return 0
    if cmd == "join":
        ip = args[1].split(":")[0]
        owners = [p for p in CLUSTERS.glob("*.json") if load(p, {}).get("owner_ip") == ip]
        if not owners:
            print(f"Connection failed. Failed to connect to {ip} (500).")
            return 6
        data = load(owners[0], {})
        if any(n["name"] == node_name() for n in data["nodes"]):
            print(f"Connection failed. The joining node ({node_ip()}) is already known to dqlite (500).")
            return 6
        is_worker = "--worker" in args
        data["nodes"].append({"name": node_name(), "ip": node_ip(), "worker": is_worker})
        save(owners[0], data)
        state["member_of"] = owners[0].stem
        save(STATE / "node.json", state)
        cluster_file(node_name()).unlink(missing_ok=True)
        if is_worker:
            LOCK.parent.mkdir(parents=True, exist_ok=True)
            LOCK.touch()
        print("Successfully joined the cluster.")
        return 0
    if cmd == "leave":
        if not state.get("member_of"):
            print("This MicroK8s deployment is not acting as a node in a cluster.")
            return 1
        state.pop("member_of")
        save(STATE / "node.json", state)
        LOCK.unlink(missing_ok=True)
        save(cluster_file(node_name()), {"owner_ip": node_ip(), "nodes": [{"name": node_name(), "ip": node_ip()}]})
        return 0
    if cmd == "remove-node":
        data = load(my_cluster(), {"nodes": []})
        node = next((n for n in data["nodes"] if n["name"] == args[1]), None)
        if node is None or (node.get("pending") and "--force" not in args):
            print(f"Node {args[1]} does not exist in Kubernetes.")
            return 1
        data["nodes"] = [n for n in data["nodes"] if n["name"] != args[1]]
        save(my_cluster(), data)
        return 0
    if cmd == "inspect":
        print("Inspecting services\n  Service snap.microk8s.daemon-kubelite is running (fake)")
        return 0
    return fail(f"fake microk8s: unsupported arguments {args}", 64)


def main() -> int:
    prog = Path(sys.argv[0]).name
    args = sys.argv[1:]
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.log").open("a") as log:
        log.write(f"{prog} {' '.join(args)}\n")
    if CLUSTERS.is_dir():  # every node's calls in one timeline, for ordering checks
        with (CLUSTERS / "events.log").open("a") as log:
            log.write(f"{time.time():.6f} {node_name()} {prog} {' '.join(args)}\n")
    return snap(args) if prog == "snap" else microk8s(args)


if __name__ == "__main__":
    sys.exit(main())
