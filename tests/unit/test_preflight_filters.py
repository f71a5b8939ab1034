"""Unit tests of the preflight decisions (plugins/filter/mllab_preflight.py)."""

from __future__ import annotations

import mllab_preflight as pf  # plugins/filter (conftest.py)
import pytest

GIB = 1024**3


# --- topology -----------------------------------------------------------------------
def test_single_node_is_fine():
    assert pf.mllab_topology_problems({"control_plane": ["a"], "workers": [], "gpu": []}) == []


def test_three_control_planes_with_workers_and_gpus_is_fine():
    groups = {"control_plane": ["a", "b", "c"], "workers": ["w1", "w2"], "gpu": ["w1", "a"]}
    assert pf.mllab_topology_problems(groups) == []


def test_workers_without_control_plane():
    (msg,) = pf.mllab_topology_problems({"control_plane": [], "workers": ["w1"]})
    assert "['w1']" in msg and "control_plane" in msg


def test_empty_inventory_names_the_way_out():
    (msg,) = pf.mllab_topology_problems({})
    assert "control_plane group is empty" in msg and "mllab_manage_microk8s: false" in msg


@pytest.mark.parametrize("n", [2, 4])
def test_even_ha_count_is_refused(n):
    cps = [f"cp{i}" for i in range(n)]
    (msg,) = pf.mllab_topology_problems({"control_plane": cps})
    assert f"control_plane has {n} hosts" in msg and "odd number" in msg


def test_gpu_host_outside_the_cluster():
    (msg,) = pf.mllab_topology_problems({"control_plane": ["a"], "gpu": ["a", "stray"]})
    assert "['stray']" in msg


def test_host_in_both_roles():
    (msg,) = pf.mllab_topology_problems({"control_plane": ["a"], "workers": ["a"]})
    assert "both control_plane and workers" in msg


def test_byo_cluster_skips_topology():
    assert pf.mllab_topology_problems({}, manage_microk8s=False) == []


# --- addons ----------------------------------------------------------------------------
def test_default_style_addons_pass():
    addons = {"dns": {"enabled": True}, "metallb": {"enabled": False, "args": ""}, "core/ingress": {"enabled": True}}
    assert pf.mllab_addon_problems(addons) == []


def test_unknown_addon_suggests_the_close_name():
    (msg,) = pf.mllab_addon_problems({"obsrvability": {"enabled": True}})
    assert "'obsrvability'" in msg and "did you mean 'observability'" in msg


def test_community_addons_are_accepted_with_prefix():
    assert pf.mllab_addon_problems({"community/kubeflow": {"enabled": True}}) == []


def test_enabled_metallb_needs_a_range():
    (msg,) = pf.mllab_addon_problems({"metallb": {"enabled": True}})
    assert "metallb" in msg and "address range" in msg
    assert pf.mllab_addon_problems({"metallb": {"enabled": True, "args": "10.0.0.10-10.0.0.20"}}) == []


@pytest.mark.parametrize(
    ("addons", "fragment"),
    [
        ({"dns": "yes"}, "must be {enabled"),
        ({"dns": {"enabled": "true"}}, "must be {enabled"),
        ({"dns": {"enabled": True, "arg": "x"}}, "unknown keys ['arg']"),
        ({"dns": {"enabled": True, "args": 3}}, "args must be a string"),
        (["dns"], "must be a mapping"),
    ],
)
def test_malformed_addon_entries(addons, fragment):
    problems = pf.mllab_addon_problems(addons)
    assert any(fragment in p for p in problems), problems


def test_enabled_addons_strips_prefix():
    addons = {"core/dns": {"enabled": True}, "registry": {"enabled": False}, "observability": {"enabled": True}}
    assert pf.mllab_enabled_addons(addons) == ["dns", "observability"]


# --- versions -----------------------------------------------------------------------------
@pytest.mark.parametrize("channel", ["1.36/stable", "1.35-strict/stable", "latest/edge", "1.36/candidate/hotfix-1"])
def test_good_channels(channel):
    assert pf.mllab_version_problems({"microk8s_channel": [channel, "snap_channel"]}) == []


@pytest.mark.parametrize("channel", ["1.36", "stable", "1.36/stabel", "v1.36/stable", "", None])
def test_bad_channels_name_the_value(channel):
    (msg,) = pf.mllab_version_problems({"microk8s_channel": [channel, "snap_channel"]})
    assert msg.startswith(f"microk8s_channel = {channel!r} is malformed") and "1.36/stable" in msg


def test_strict_channel_is_refused_with_the_classic_one():
    """Regression (issue 12, item 11): `1.36-strict/stable` passed preflight, but strict MicroK8s
    uses the group snap_microk8s (canonical/microk8s microk8s-resources/actions/common/utils.sh)
    and the nvidia addon is classic-only (canonical/microk8s-core-addons@f6898115:addons.yaml),
    while this kit installs the classic snap."""
    (msg,) = pf.mllab_channel_problems("1.36-strict/stable")
    assert msg.startswith("microk8s_channel = '1.36-strict/stable' is a strictly confined MicroK8s")
    assert "snap_microk8s" in msg and msg.endswith("use the classic channel microk8s_channel: 1.36/stable")
    (gpu,) = pf.mllab_channel_problems("1.35-strict/edge", gpu=True)
    assert "nvidia addon of the GPU layer is classic-only" in gpu and gpu.endswith("1.35/edge")
    assert pf.mllab_channel_problems("1.36/stable") == pf.mllab_channel_problems("latest/edge") == []


def test_dashboard_is_known_up_to_1_35():
    """Regression (issue 12, item 11): `dashboard` is a core addon in addons.yaml of
    canonical/microk8s-core-addons branches 1.30 to 1.35 (1.32@ceb33305 ... 1.35@ec06cfb5) and gone
    from main (1.36), so it must pass on 1.32-1.35 channels and be refused on 1.36."""
    dashboard = {"dashboard": {"enabled": True}}
    for channel in ("1.32/stable", "1.33/stable", "1.34/stable", "1.35/stable", "1.35-strict/stable"):
        assert pf.mllab_addon_problems(dashboard, channel=channel) == [], channel
    (msg,) = pf.mllab_addon_problems(dashboard, channel="1.36/stable")
    assert "unknown MicroK8s addon 'dashboard' (MicroK8s offers it up to 1.35, not on microk8s_channel = " in msg
    assert "dashboard" in pf.mllab_known_addons("1.30/stable") and "dashboard" not in pf.mllab_known_addons("")


def test_operator_version_needs_the_v():
    (msg,) = pf.mllab_version_problems({"gpu_operator_version": ["25.10.0", "v_semver"]})
    assert "'25.10.0'" in msg and "v25.10.0" in msg


# --- offline files ------------------------------------------------------------------------
def test_no_offline_files_is_fine():
    assert pf.mllab_offline_problems({"snap": "", "assert": ""}, "1.36/stable") == []


def test_only_one_offline_file():
    problems = pf.mllab_offline_problems(
        {"snap": "/srv/microk8s_8000.snap", "assert": "", "snap_exists": True}, "1.36/stable"
    )
    assert len(problems) == 1 and "set both" in problems[0] and "--channel=1.36/stable" in problems[0]


def test_missing_offline_files_are_named():
    files = {"snap": "/nope/m.snap", "assert": "/nope/m.assert", "snap_exists": False, "assert_exists": False}
    problems = pf.mllab_offline_problems(files, "1.36/stable")
    assert len(problems) == 2
    assert "/nope/m.snap does not exist" in problems[0] and "/nope/m.assert does not exist" in problems[1]


def test_offline_files_with_wrong_suffix():
    files = {"snap": "/a/m.zip", "assert": "/a/m.txt", "snap_exists": True, "assert_exists": True}
    problems = pf.mllab_offline_problems(files, "1.36/stable")
    assert "not a .snap file" in problems[0] and "not an .assert file" in problems[1]


# --- host facts ---------------------------------------------------------------------------
SETTINGS = {
    "supported_os": {"Ubuntu": ["22.04", "24.04"], "Debian": ["12", "13"]},
    "supported_arch": ["x86_64", "aarch64"],
    "gpu_arch": ["x86_64"],
    "addons": ["dns", "observability"],
    "base_memory_mb": 3072,
    "addon_memory_mb": {"observability": 2048},
    "base_disk_mb": 20480,
    "addon_disk_mb": {"observability": 10240},
    "disk_path": "/var/snap",
    "snap_store_url": "https://api.snapcraft.io/",
    "channel": "1.36/stable",
}
MOUNTS = [
    {"mount": "/", "size_available": 100 * GIB},
    {"mount": "/var", "size_available": 10 * GIB},
    {"mount": "/var/snapshots", "size_available": 500 * GIB},
]


def host(**over):
    base = {
        "distribution": "Debian",
        "version": "12.11",
        "major_version": "12",
        "arch": "x86_64",
        "memtotal_mb": 16000,
        "mounts": [{"mount": "/", "size_available": 100 * GIB}],
        "in_gpu_group": False,
        "snap_store": {"status": 200},
    }
    base.update(over)
    return base


def test_healthy_host():
    assert pf.mllab_host_problems(host(), SETTINGS) == []


def test_unsupported_os_lists_the_supported_ones():
    (msg,) = pf.mllab_host_problems(host(distribution="Debian", version="11.9", major_version="11"), SETTINGS)
    assert msg.startswith("Debian 11.9 is not supported") and "Ubuntu 22.04, 24.04" in msg


def test_ubuntu_is_matched_on_the_full_version():
    assert pf.mllab_host_problems(host(distribution="Ubuntu", version="24.04", major_version="24"), SETTINGS) == []
    (msg,) = pf.mllab_host_problems(host(distribution="Ubuntu", version="23.10", major_version="23"), SETTINGS)
    assert "Ubuntu 23.10 is not supported" in msg


def test_gpu_group_on_arm():
    (msg,) = pf.mllab_host_problems(host(arch="aarch64", in_gpu_group=True), SETTINGS)
    assert "gpu group but is aarch64" in msg


def test_first_control_plane_running_the_nvidia_addon_must_be_amd64():
    """Regression (issue 12, item 11): the node that runs `microk8s enable nvidia` (the first
    control-plane host) was never checked, yet the addon is amd64-only
    (canonical/microk8s-core-addons@f6898115:addons.yaml, nvidia supported_architectures)."""
    problems = pf.mllab_host_problems(host(arch="aarch64", runs_nvidia_addon=True), SETTINGS)
    assert len(problems) == 1 and "runs `microk8s enable nvidia`" in problems[0]
    assert "but it is aarch64" in problems[0] and "Put an x86_64 host first in control_plane" in problems[0]
    assert pf.mllab_host_problems(host(arch="aarch64", runs_nvidia_addon=False), SETTINGS) == []
    assert pf.mllab_host_problems(host(arch="x86_64", runs_nvidia_addon=True), SETTINGS) == []


def test_memory_need_counts_enabled_addons():
    (msg,) = pf.mllab_host_problems(host(memtotal_mb=4000), SETTINGS)
    assert "4000 MiB is below the 5120 MiB" in msg and "observability" in msg


def test_disk_is_read_from_the_mount_that_holds_the_path():
    # /var (10 GiB free) holds /var/snap, not /var/snapshots nor /.
    assert pf.mllab_mount_for(MOUNTS, "/var/snap")["mount"] == "/var"
    (msg,) = pf.mllab_host_problems(host(mounts=MOUNTS), SETTINGS)
    assert "free disk on /var is 10240 MiB, below the 30720 MiB" in msg


def test_unreachable_snap_store_explains_offline_install():
    probe = {"status": -1, "msg": "Request failed: <urlopen error [Errno -3] Temporary failure in name resolution>"}
    (msg,) = pf.mllab_host_problems(host(snap_store=probe), SETTINGS)
    assert "snap store (https://api.snapcraft.io/) is unreachable" in msg
    assert "snap download microk8s --channel=1.36/stable" in msg and "microk8s_snap_file" in msg


def test_store_not_probed_is_not_a_problem():
    assert pf.mllab_host_problems(host(snap_store=None), SETTINGS) == []


def test_every_problem_is_reported_at_once():
    bad = host(
        distribution="Fedora",
        version="40",
        major_version="40",
        arch="ppc64le",
        memtotal_mb=512,
        mounts=[{"mount": "/", "size_available": 0}],
        snap_store={},
    )
    assert len(pf.mllab_host_problems(bad, SETTINGS)) == 5


def test_no_mount_listed_means_disk_not_measured():
    # Some containers list no root mount in their facts: no reading, so no "0 MiB free" claim.
    assert pf.mllab_mount_for([], "/var/snap") == {}
    assert pf.mllab_host_problems(host(mounts=[]), SETTINGS) == []


# --- defect 1 of issue 12: a channel change on an installed MicroK8s -----------------------------
def _installed(tracking: str, version: str = "v1.36.0") -> dict:
    """The microk8s row of the `snap list` table sample (tests/unit/samples/microk8s/snap-list-held.txt,
    its layout from snapd's docs, not captured), with its Tracking and Version columns set as another
    install would show them."""
    import mllab_microk8s as mk
    import samples

    row = mk.mllab_microk8s_snap_list(samples.sample("microk8s", "snap-list-held.txt"))["microk8s"]
    return {**row, "tracking": tracking, "version": version}


def test_the_sample_is_what_the_tests_change():
    assert _installed("1.36/stable")["notes"] == ["classic", "held"]


@pytest.mark.parametrize(
    ("tracking", "channel"),
    [("1.36/stable", "1.36/stable"), ("1.36/stable", "1.36"), ("-", "1.35/stable")],
)
def test_no_channel_change_passes(tracking, channel):
    assert pf.mllab_channel_change_problems(_installed(tracking), channel) == []
    assert pf.mllab_channel_change_problems(None, channel) == []


def test_a_channel_change_stops_and_names_the_upgrade_playbook():
    [msg] = pf.mllab_channel_change_problems(_installed("1.35/stable", "v1.35.4"), "1.36/stable", "node2")
    assert "MicroK8s on node2 tracks 1.35/stable but microk8s_channel is 1.36/stable" in msg
    assert "playbooks/upgrade.yml -e microk8s_channel=1.36/stable" in msg
    assert "microk8s_channel: 1.35/stable" in msg


@pytest.mark.parametrize(
    ("tracking", "version", "channel", "needed"),
    [
        ("1.35/stable", "v1.35.4", "1.36/stable", True),
        ("-", "v1.35.4", "1.36/stable", True),  # installed from a file: its Version says 1.35
        ("1.36/candidate", "v1.36.0", "1.36/stable", True),
        ("1.36/stable", "v1.36.0", "1.36/stable", False),
    ],
)
def test_one_minor_up_is_an_upgrade(tracking, version, channel, needed):
    assert pf.mllab_upgrade_problems(_installed(tracking, version), channel) == []
    assert pf.mllab_upgrade_needed(_installed(tracking, version), channel) is needed


@pytest.mark.parametrize(
    ("tracking", "version", "channel", "fragment"),
    [
        (
            "1.34/stable",
            "v1.34.2",
            "1.36/stable",
            "is 2 upgrades: run upgrade.yml with microk8s_channel = 1.35/stable, then 1.36/stable",
        ),
        ("1.36/stable", "v1.36.0", "1.35/stable", "a downgrade is not an upgrade"),
        ("1.36/stable", "v1.36.0", "latest/stable", "names no classic minor"),
        ("1.35/stable", "v1.35.4", "1.36-strict/stable", "names no classic minor"),
        ("-", "unknown", "1.36/stable", "cannot tell which Kubernetes minor"),
    ],
)
def test_upgrades_that_skip_go_back_or_leave_classic_are_refused(tracking, version, channel, fragment):
    [msg] = pf.mllab_upgrade_problems(_installed(tracking, version), channel, "node1")
    assert fragment in msg


def test_upgrading_nothing_installed_points_to_site():
    assert "install it with site.yml" in pf.mllab_upgrade_problems(None, "1.36/stable")[0]


# --- issue 12: preflight checks what later layers need ----------------------------------------------
@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ({"rc": 0, "stdout": "3.10\n"}, "labs_python = python3 on cp1 is Python 3.10; the labs need 3.11"),
        ({"rc": 1, "stdout": "", "stderr": "ModuleNotFoundError: No module named 'venv'"}, "No module named 'venv'"),
        ({"rc": 2, "msg": "[Errno 2] No such file or directory: b'python3.11'"}, "does not run on cp1"),
    ],
)
def test_labs_python_older_than_311_or_without_venv_is_refused(answer, fragment):
    [msg] = pf.mllab_labs_python_problems(answer, "python3", "cp1")
    assert fragment in msg and "labs_python: python3.11" in msg


def test_labs_python_311_or_skipped_passes():
    assert pf.mllab_labs_python_problems({"rc": 0, "stdout": "3.11\n"}, "python3", "cp1") == []
    assert pf.mllab_labs_python_problems({"rc": 0, "stdout": "3.12"}, "python3", "cp1") == []
    assert pf.mllab_labs_python_problems({"skipped": True}, "python3", "cp1") == []


def test_argument_spec_check_ignores_required_and_names_the_role():
    spec = {"a": {"type": "int", "required": True}, "b": {"type": "dict", "options": {"c": {"required": True}}}}
    assert pf.mllab_spec_types_only(spec) == {"a": {"type": "int"}, "b": {"type": "dict", "options": {"c": {}}}}
    results = [
        {"item": "/x/roles/microk8s/meta/argument_specs.yml", "failed": True, "argument_errors": ["bad timeout"]},
        {"item": "/x/roles/gpu/meta/argument_specs.yml", "failed": False},
    ]
    assert pf.mllab_argument_problems(results) == [
        "bad timeout (a setting of roles/microk8s: see its meta/argument_specs.yml and README)"
    ]
