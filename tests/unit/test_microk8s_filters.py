"""Unit tests of plugins/filter/mllab_microk8s.py on MicroK8s CLI output samples
(tests/unit/samples/microk8s/, each file's `#~` header says where its format comes from)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import samples  # tests/unit/samples (conftest.py puts tests/unit on the path)

ROOT = Path(__file__).resolve().parents[2]

import mllab_microk8s as m  # noqa: E402

LAB_ADDONS = {
    "dns": {"enabled": True},
    "rbac": {"enabled": True},
    "hostpath-storage": {"enabled": True},
    "helm3": {"enabled": True},
    "ingress": {"enabled": True},
    "metrics-server": {"enabled": True},
    "cert-manager": {"enabled": True},
    "observability": {"enabled": True},
    "registry": {"enabled": False},
    "metallb": {"enabled": False, "args": ""},
}


def sample(name: str) -> str:
    return samples.sample("microk8s", name)


def test_every_sample_names_its_source():
    assert samples.without_provenance("microk8s") == []


# --------------------------------------------------------------------------- status
def test_status_single_node():
    st = m.mllab_microk8s_status(sample("status-single-1.36.txt"))
    assert st["state"] == "running" and st["running"] is True
    assert st["ha"] == {"enabled": True, "nodes": [{"address": "127.0.0.1:19001", "role": "voter"}]}
    assert st["addons"]["dns"] == {"status": "enabled", "repository": "core", "version": "1.13.1"}
    assert st["addons"]["rbac"]["status"] == "disabled"
    assert st["addons"]["community"]["version"] is None  # "version: " prints nothing
    assert len(st["addons"]) == 14


def test_status_ha_with_colon_in_description():
    st = m.mllab_microk8s_status(sample("status-ha-1.36.txt"))
    assert [n["address"] for n in st["ha"]["nodes"]] == ["10.0.0.1:19001", "10.0.0.2:19001", "10.0.0.3:19001"]
    assert {n["role"] for n in st["ha"]["nodes"]} == {"voter"}
    assert st["addons"]["metrics-server"]["status"] == "enabled"
    assert st["addons"]["argocd"] == {"status": "disabled", "repository": "community", "version": "2.6.6"}


def test_status_legacy_format_without_repository():
    st = m.mllab_microk8s_status(sample("status-legacy-ba766002.txt"))
    assert st["addons"]["storage"]["status"] == "enabled"
    assert st["addons"]["storage"]["repository"] == ""
    assert st["addons"]["gpu"]["status"] == "disabled"


@pytest.mark.parametrize(
    ("name", "state"),
    [("status-not-running.txt", "not-running"), ("status-worker.txt", "worker"), ("status-stopped.txt", "stopped")],
)
def test_status_special_states(name, state):
    st = m.mllab_microk8s_status(sample(name))
    assert st["state"] == state
    assert st["running"] is False
    assert st["addons"] == {}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("status-pretty-malformed.txt", "--format yaml"),
        ("status-truncated-malformed.txt", "no 'microk8s: running:' line"),
        ("status-bad-status-malformed.txt", "'enabling'"),
        ("status-no-permission.txt", "microk8s group"),
    ],
)
def test_status_malformed(name, message):
    with pytest.raises(m.MicroK8sOutputError, match="microk8s status") as err:
        m.mllab_microk8s_status(sample(name))
    assert message in str(err.value)


def test_status_rejects_non_text():
    with pytest.raises(m.MicroK8sOutputError, match="expected the command's text output"):
        m.mllab_microk8s_status(None)


def test_status_bad_boolean():
    with pytest.raises(m.MicroK8sOutputError, match="expected True or False, got 'maybe'"):
        m.mllab_microk8s_status("microk8s:\n  running: maybe\n")


# --------------------------------------------------------------------------- addon plan
def test_addon_plan_from_fresh_single_node():
    plan = m.mllab_microk8s_addon_plan(sample("status-single-1.36.txt"), LAB_ADDONS)
    # dns and helm3 are already on, registry/metallb already off: only the differences, in dependency order
    assert [a["name"] for a in plan] == [
        "rbac",
        "hostpath-storage",
        "metrics-server",
        "ingress",
        "cert-manager",
        "observability",
    ]
    assert {a["action"] for a in plan} == {"enable"}
    assert plan[0]["argv"] == ["microk8s", "enable", "rbac"]


def test_addon_plan_is_empty_when_converged():
    wanted = dict(LAB_ADDONS, registry={"enabled": True})
    assert m.mllab_microk8s_addon_plan(sample("status-ha-1.36.txt"), wanted) == []


def test_addon_plan_disables_in_reverse_order_after_enables():
    wanted = {
        "registry": {"enabled": False},
        "dns": {"enabled": False},
        "metallb": {"enabled": True, "args": "10.64.140.43-10.64.140.49"},
    }
    plan = m.mllab_microk8s_addon_plan(sample("status-ha-1.36.txt"), wanted)
    assert [(a["action"], a["name"]) for a in plan] == [
        ("enable", "metallb"),
        ("disable", "registry"),
        ("disable", "dns"),
    ]
    assert plan[0]["argv"] == ["microk8s", "enable", "metallb", "10.64.140.43-10.64.140.49"]
    assert plan[2]["argv"] == ["microk8s", "disable", "dns"]


def test_addon_plan_args_forms():
    st = sample("status-single-1.36.txt")
    plan = m.mllab_microk8s_addon_plan(
        st,
        {
            "core/hostpath-storage": {"enabled": True, "args": "--reclaim-policy Retain"},
            "rbac": {"enabled": True, "args": ":ignored-legacy"},
        },
    )
    argv = {a["name"]: a["argv"] for a in plan}
    assert argv["hostpath-storage"] == ["microk8s", "enable", "core/hostpath-storage", "--reclaim-policy", "Retain"]
    assert argv["rbac"] == ["microk8s", "enable", "rbac:ignored-legacy"]


def test_addon_plan_aliases_and_skip():
    st = sample("status-legacy-ba766002.txt")
    # storage is the old name of hostpath-storage; nvidia/gpu belongs to the gpu role
    assert m.mllab_microk8s_addon_plan(st, {"hostpath-storage": {"enabled": True}, "gpu": {"enabled": True}}) == []


def test_addon_plan_community_needs_the_repository():
    st = sample("status-single-1.36.txt")
    with pytest.raises(m.MicroK8sOutputError, match="enable the community repository first"):
        m.mllab_microk8s_addon_plan(st, {"community/argocd": {"enabled": True}})
    plan = m.mllab_microk8s_addon_plan(st, {"community": {"enabled": True}, "community/argocd": {"enabled": True}})
    assert [a["argv"][-1] for a in plan] == ["community", "community/argocd"]


def test_addon_plan_unknown_addon_names_what_is_offered():
    with pytest.raises(m.MicroK8sOutputError, match=r"addon 'dashboard' is not offered.*it offers: cert-manager"):
        m.mllab_microk8s_addon_plan(sample("status-single-1.36.txt"), {"dashboard": {"enabled": True}})


def test_addon_plan_bad_spec():
    with pytest.raises(m.MicroK8sOutputError, match=r"microk8s_addons\['dns'\] must be"):
        m.mllab_microk8s_addon_plan(sample("status-single-1.36.txt"), {"dns": "yes"})


@pytest.mark.parametrize("name", ["status-not-running.txt", "status-worker.txt"])
def test_addon_plan_refuses_when_not_running(name):
    with pytest.raises(m.MicroK8sOutputError, match="not running"):
        m.mllab_microk8s_addon_plan(sample(name), LAB_ADDONS)


# --------------------------------------------------------------------------- joining
def test_join_info_and_url():
    info = m.mllab_microk8s_join_info(sample("add-node.txt"))
    assert info["token"] == "3f1c9e0ab2d44c7e8a51f0b6c2d9e417/6a3bd7f1c0e2"
    assert [u["address"] for u in info["urls"]] == ["10.0.0.1", "192.168.122.10", "fd42:1:2::10"]
    assert {u["port"] for u in info["urls"]} == {25000}
    assert m.mllab_microk8s_join_url(info, "192.168.122.10").startswith("192.168.122.10:25000/")
    # an address the node does not offer (e.g. a NAT address in ansible_host): first IPv4 one
    assert m.mllab_microk8s_join_url(info, "203.0.113.9").startswith("10.0.0.1:25000/")
    assert m.mllab_microk8s_join_url(sample("add-node.txt")).startswith("10.0.0.1:")


def test_join_url_needs_ipv4():
    with pytest.raises(m.MicroK8sOutputError, match="needs an IPv4 address"):
        m.mllab_microk8s_join_url(sample("add-node-ipv6-only.txt"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("add-node-pretty-malformed.txt", "expected JSON from `--format json`"),
        ("add-node-worker-malformed.txt", "expected JSON"),
        ("add-node-no-urls-malformed.txt", "printed no join URL"),
    ],
)
def test_join_info_malformed(name, message):
    with pytest.raises(m.MicroK8sOutputError, match="add-node") as err:
        m.mllab_microk8s_join_info(sample(name))
    assert message in str(err.value)


def test_join_info_rejects_mismatched_url_and_short_token():
    good = "0123456789abcdef0123456789abcdef/0a1b2c3d4e5f"
    with pytest.raises(m.MicroK8sOutputError, match="with the printed token"):
        m.mllab_microk8s_join_info(json.dumps({"token": good, "urls": ["10.0.0.1:25000/other/0a1b"]}))
    with pytest.raises(m.MicroK8sOutputError, match="32\\+ characters"):
        m.mllab_microk8s_join_info('{"token": "short/0a1b2c", "urls": []}')
    with pytest.raises(m.MicroK8sOutputError, match="does not start with an IP"):
        m.mllab_microk8s_join_info(json.dumps({"token": good, "urls": [f"cp1:25000/{good}"]}))


def test_join_argv():
    url = "10.0.0.1:25000/0123456789abcdef0123456789abcdef/0a1b2c3d4e5f"
    assert m.mllab_microk8s_join_argv(url) == ["microk8s", "join", url]
    assert m.mllab_microk8s_join_argv(url, True) == ["microk8s", "join", url, "--worker"]
    with pytest.raises(m.MicroK8sOutputError, match="is not <ip>:<port>/<token>"):
        m.mllab_microk8s_join_argv("10.0.0.1")


def test_nodes_and_join_plan():
    nodes = m.mllab_microk8s_nodes(sample("nodes-ha.txt"))
    assert [(n["name"], n["role"], n["ready"]) for n in nodes] == [
        ("lab-cp1", "control-plane", True),
        ("lab-cp2", "control-plane", True),
        ("lab-cp3", "control-plane", True),
        ("lab-gpu1", "worker", False),
    ]
    hosts = [
        {"host": "cp2", "node_name": "LAB-CP2", "worker": False},
        # renamed host: its own MicroK8s says it is clustered (dqlite lists 3 nodes)
        {"host": "cp3", "node_name": "lab-cp3-new", "worker": False, "member": True},
        {"host": "gpu1", "node_name": "lab-gpu1", "worker": True},
        {"host": "gpu2", "node_name": "lab-gpu2", "worker": "True"},
        {"host": "cp4", "node_name": "lab-cp4", "worker": False, "member": "False"},
    ]
    plan = m.mllab_microk8s_join_plan(sample("nodes-ha.txt"), hosts, "lab-cp1")
    assert plan == [
        {"host": "gpu2", "node_name": "lab-gpu2", "worker": True},
        {"host": "cp4", "node_name": "lab-cp4", "worker": False},
    ]
    assert m.mllab_microk8s_join_plan(nodes, hosts[:3]) == []


def test_join_plan_ignores_addresses_hosts_share():
    """Regression (issue 12, item 5): a host counted as joined when any of its IPv4
    addresses equalled a node address, so where hosts share one (VirtualBox NAT 10.0.2.15,
    some clouds) no host ever joined. Membership is now the node name MicroK8s registers
    (socket.gethostname().lower(), canonical/microk8s@d099c907:scripts/wrappers/join.py)
    or the host's own MicroK8s membership state, never an address."""
    nat = json.loads(sample("nodes-ha.txt"))
    for item in nat["items"]:  # every node also carries the NAT address
        item["status"]["addresses"].insert(0, {"type": "InternalIP", "address": "10.0.2.15"})
    hosts = [{"host": "cp4", "node_name": "lab-cp4", "addresses": ["10.0.2.15", "192.168.56.14"], "worker": False}]
    assert m.mllab_microk8s_join_plan(json.dumps(nat), hosts) == [
        {"host": "cp4", "node_name": "lab-cp4", "worker": False}
    ]


def test_join_plan_refuses_duplicate_node_names():
    hosts = [{"host": "a", "node_name": "Lab-X"}, {"host": "b", "node_name": "lab-x"}]
    with pytest.raises(m.MicroK8sOutputError, match=r"both have the node name 'lab-x'.*hostnamectl set-hostname"):
        m.mllab_microk8s_join_plan(sample("nodes-ha.txt"), hosts)
    with pytest.raises(m.MicroK8sOutputError, match="the first control-plane node and 'a'"):
        m.mllab_microk8s_join_plan(sample("nodes-ha.txt"), hosts[:1], "lab-x")
    with pytest.raises(m.MicroK8sOutputError, match="has no node name"):
        m.mllab_microk8s_join_plan(sample("nodes-ha.txt"), [{"host": "c", "node_name": ""}])


def test_member_from_the_nodes_own_state():
    """canonical/microk8s@d099c907:scripts/wrappers/common/utils.py get_dqlite_info: status lists
    the dqlite cluster's nodes; a worker answers with the 'acting as a node' text."""
    assert m.mllab_microk8s_member({"rc": 0, "stdout": sample("status-ha-1.36.txt")}) is True
    assert m.mllab_microk8s_member({"rc": 0, "stdout": sample("status-single-1.36.txt")}) is False
    assert m.mllab_microk8s_member({"rc": 0, "stdout": sample("status-worker.txt")}) is True
    assert m.mllab_microk8s_member(sample("status-stopped.txt")) is False
    assert m.mllab_microk8s_member({"rc": 1, "stdout": "", "stderr": "Insufficient permissions"}) is False
    assert m.mllab_microk8s_member({"skipped": True}, clustered_lock=True) is True
    assert m.mllab_microk8s_member({"skipped": True}) is False


def test_nodes_malformed():
    with pytest.raises(m.MicroK8sOutputError, match="expected kind List or NodeList, got 'PodList'"):
        m.mllab_microk8s_nodes(sample("nodes-malformed.txt"))
    with pytest.raises(m.MicroK8sOutputError, match="not JSON"):
        m.mllab_microk8s_nodes("The connection to the server 127.0.0.1:16443 was refused")


# --------------------------------------------------------------------------- snap list
def test_snap_list():
    held = m.mllab_microk8s_snap_list(sample("snap-list-held.txt"))
    assert held["microk8s"]["tracking"] == "1.36/stable"
    assert "held" in held["microk8s"]["notes"]
    fresh = m.mllab_microk8s_snap_list(sample("snap-list-not-held.txt"))
    assert fresh["microk8s"]["notes"] == ["classic"]
    assert fresh["core22"]["tracking"] == "latest/stable"
    with pytest.raises(m.MicroK8sOutputError, match="expected a table"):
        m.mllab_microk8s_snap_list(sample("snap-list-malformed.txt"))


# --------------------------------------------------------------------------- proxy, mirrors
def test_containerd_env(tmp_path):
    assert m.mllab_microk8s_containerd_env({}) == ""
    env = m.mllab_microk8s_containerd_env({"http": "http://proxy.corp:3128", "no_proxy": "10.20.0.0/16, .corp"})
    lines = env.splitlines()
    assert "HTTPS_PROXY=http://proxy.corp:3128" in lines  # https falls back to http
    assert "http_proxy=http://proxy.corp:3128" in lines
    no_proxy = next(ln for ln in lines if ln.startswith("NO_PROXY=")).split("=", 1)[1]
    assert no_proxy.split(",")[:2] == ["10.1.0.0/16", "10.152.183.0/24"]
    assert no_proxy.endswith("10.20.0.0/16,.corp")
    # it is sourced by a shell: check that bash reads the values back unchanged
    import subprocess

    script = tmp_path / "env"
    script.write_text(env + "\n")
    out = subprocess.run(
        ["bash", "-c", f'set -a; . {script}; echo "$HTTPS_PROXY|$NO_PROXY"'], capture_output=True, text=True
    )
    assert out.stdout.strip() == f"http://proxy.corp:3128|{no_proxy}"
    with pytest.raises(m.MicroK8sOutputError, match=r"microk8s_proxy.https = 'proxy:3128' is not a proxy URL"):
        m.mllab_microk8s_containerd_env({"https": "proxy:3128"})


def test_hosts_toml_parses_as_toml():
    text = m.mllab_microk8s_hosts_toml(
        "docker.io",
        ["https://mirror.corp:5000", {"url": "http://10.0.0.5:5000", "skip_verify": True, "ca": "/etc/ca.pem"}],
    )
    doc = tomllib.loads(text)
    assert doc["server"] == "https://registry-1.docker.io"
    assert list(doc["host"]) == ["https://mirror.corp:5000", "http://10.0.0.5:5000"]
    assert doc["host"]["https://mirror.corp:5000"]["capabilities"] == ["pull", "resolve"]
    assert doc["host"]["http://10.0.0.5:5000"] == {
        "capabilities": ["pull", "resolve"],
        "skip_verify": True,
        "ca": "/etc/ca.pem",
    }
    quay = tomllib.loads(m.mllab_microk8s_hosts_toml("quay.io", {"mirrors": ["https://m.corp"]}))
    assert quay["server"] == "https://quay.io"


@pytest.mark.parametrize(
    ("registry", "spec", "message"),
    [
        ("docker.io", [], "must list at least one mirror"),
        ("docker io", ["https://m"], "is not a host"),
        ("docker.io", ["mirror.corp"], "is not an http"),
        ("docker.io", [{"url": "https://m", "capabilities": ["pull", "delete"]}], "unknown capabilities"),
    ],
)
def test_hosts_toml_bad_input(registry, spec, message):
    with pytest.raises(m.MicroK8sOutputError, match=message):
        m.mllab_microk8s_hosts_toml(registry, spec)


def test_filters_are_registered():
    names = m.FilterModule().filters()
    assert all(callable(f) and name.startswith("mllab_microk8s_") for name, f in names.items())
    assert len(names) == 15


# --- defect 12 of issue 12: sudo's secure_path on Debian has no /snap/bin -------------------------
def _commands(node, where=""):
    """Every (file, command) an ansible.builtin.command task runs: its cmd string or argv[0]."""
    if isinstance(node, dict):
        cmd = node.get("ansible.builtin.command")
        if isinstance(cmd, dict):
            yield where, str(cmd.get("cmd") or (cmd.get("argv") or [""])[0]).strip()
        for value in node.values():
            yield from _commands(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _commands(item, where)


def test_no_task_calls_a_bare_microk8s():
    """Each role reaches MicroK8s by mllab_microk8s_cli (/snap/bin/microk8s): a bare `microk8s`
    is "command not found" under become on Debian (the fake-cli molecule scenario installs the
    stand-in at /snap/bin only, so it fails there too)."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "roles").glob("*/tasks/*.yml")) + sorted((root / "roles").glob("*/handlers/*.yml"))
    found = [(f.relative_to(root), c) for f in files for _, c in _commands(yaml.safe_load(f.read_text()))]
    assert any("mllab_microk8s_cli" in c for _, c in found)  # the scan sees the calls
    bare = [(str(f), c) for f, c in found if c == "microk8s" or c.startswith("microk8s ")]
    assert bare == []
    defaults = yaml.safe_load((root / "roles/mllab_defaults/defaults/main.yml").read_text())
    assert defaults["mllab_microk8s_cli"] == "/snap/bin/microk8s"


# --- defect 9 of issue 12: a half-failed chart addon reads as enabled ----------------------------
def test_a_half_failed_observability_is_disabled_and_enabled_again():
    text = sample("helm-list-observability-partial.json")
    wanted = {"observability": {"enabled": True}, "dns": {"enabled": True}, "cert-manager": {"enabled": False}}
    [partial] = m.mllab_microk8s_addon_partial(text, wanted, "/snap/bin/microk8s")
    assert partial["name"] == "observability"
    assert "loki failed" in partial["reason"] and "tempo missing" in partial["reason"]
    assert "kube-prom-stack" not in partial["reason"]
    assert partial["argv"] == [
        ["/snap/bin/microk8s", "disable", "observability"],
        ["/snap/bin/microk8s", "enable", "observability"],
    ]


def test_addon_args_that_leave_a_release_out_are_respected():
    rows = json.loads(sample("helm-list-observability-partial.json"))
    rows[1]["status"] = "deployed"
    wanted = {"core/observability": {"enabled": True, "args": "--without-tempo"}}
    assert m.mllab_microk8s_addon_partial(json.dumps(rows), wanted) == []
    [partial] = m.mllab_microk8s_addon_partial(json.dumps(rows), {"observability": {"enabled": True}})
    assert partial["reason"].endswith("tempo missing")
    assert m.mllab_microk8s_addon_partial("[]", {"cert-manager": {"enabled": True}})[0]["reason"].endswith(
        "cert-manager missing"
    )


def test_addon_partial_names_bad_helm_output():
    with pytest.raises(m.MicroK8sOutputError, match="helm list --output json: not JSON"):
        m.mllab_microk8s_addon_partial("Error: Kubernetes cluster unreachable", {"observability": {"enabled": True}})


# --- defect 6 of issue 12: the proxy reaches snapd and microk8s enable, not only containerd --------
def test_one_proxy_for_snapd_containerd_and_enable():
    proxy = {"http": "http://proxy.example.com:3128", "no_proxy": [".example.com"]}
    env = m.mllab_microk8s_proxy_env(proxy)
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy.example.com:3128"  # falls back to http
    assert env["NO_PROXY"].startswith("10.1.0.0/16,10.152.183.0/24") and env["NO_PROXY"].endswith(".example.com")
    assert m.mllab_microk8s_containerd_env(proxy).splitlines()[2] == "HTTPS_PROXY=http://proxy.example.com:3128"
    assert m.mllab_microk8s_snapd_proxy(proxy) == {
        "proxy.http": "http://proxy.example.com:3128",
        "proxy.https": "http://proxy.example.com:3128",
    }
    assert m.mllab_microk8s_snapd_proxy({"https": "http://p:3128"})["proxy.http"] == "http://p:3128"
    assert m.mllab_microk8s_proxy_env({}) == {} and m.mllab_microk8s_snapd_proxy(None) == {}
    with pytest.raises(m.MicroK8sOutputError, match=r"microk8s_proxy\.https = 'proxy:3128' is not a proxy URL"):
        m.mllab_microk8s_snapd_proxy({"https": "proxy:3128"})
