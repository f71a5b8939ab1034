"""Host layer (roles/base): OS prerequisites for MicroK8s. Runs in molecule's verify
and in `make verify` against real hosts."""

from __future__ import annotations

import pytest
from knobs import admins  # tests/infra/knobs.py

PACKAGES = ["snapd", "squashfs-tools", "iptables", "curl", "ca-certificates", "jq"]
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}


@pytest.fixture(autouse=True)
def _host_layer(require_layer):
    require_layer("host")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_installed(host, name):
    assert host.package(name).is_installed, f"{name} is not installed"


def test_kernel_modules_persist(host):
    conf = host.file("/etc/modules-load.d/mllab.conf")
    assert conf.mode == 0o644
    assert set(conf.content_string.split()) >= {"br_netfilter", "overlay"}


def test_kernel_modules_active(host):
    # br_netfilter may be built in (no /sys/module entry): its sysctl tree proves it.
    assert host.file("/proc/sys/net/bridge").is_directory, "br_netfilter is not active"
    assert host.file("/sys/module/overlay").is_directory, "overlay is not active"


@pytest.mark.parametrize(("key", "value"), SYSCTLS.items())
def test_sysctl_persisted(host, key, value):
    assert f"{key}={value}" in host.file("/etc/sysctl.d/99-mllab.conf").content_string


@pytest.mark.parametrize(("key", "value"), SYSCTLS.items())
def test_sysctl_live(host, key, value):
    path = "/proc/sys/" + key.replace(".", "/")
    if host.run(f"test -w {path}").rc != 0:  # a container's /proc/sys is read-only: the host's business
        pytest.skip(f"{path} is read-only here (a container): the live value is the host kernel's")
    assert host.file(path).content_string.strip() == value, f"{key} is not {value} in the running kernel"


def test_snapd_enabled_with_its_mount_dir(host):
    assert host.service("snapd.socket").is_enabled
    assert host.service("snapd.service").is_enabled
    assert host.file("/snap").is_directory


def test_snapd_running_where_started(host):
    if not host.ansible.get_variables().get("base_snapd_start", True):
        pytest.skip("base_snapd_start is false on this host (containers cannot run snapd)")
    assert host.service("snapd.socket").is_running


TIME_SYNC_DAEMONS = ["systemd-timesyncd", "chrony", "chronyd", "ntp", "ntpsec"]


def time_sync_enabled(host) -> list[str]:
    return [d for d in TIME_SYNC_DAEMONS if host.run(f"systemctl is-enabled {d}").stdout.strip() == "enabled"]


def test_time_sync_enabled(host):
    assert time_sync_enabled(host), f"none of {TIME_SYNC_DAEMONS} is enabled"


def test_time_sync_running(host):
    if host.run("systemd-detect-virt --container").rc == 0:
        pytest.skip("in a container the host keeps the clock: timesyncd refuses to run there by design")
    enabled = time_sync_enabled(host)
    assert enabled, f"none of {TIME_SYNC_DAEMONS} is enabled"
    assert any(host.service(d).is_running for d in enabled), f"{enabled} enabled but not running"


def test_microk8s_group_and_users(host):
    assert host.group("microk8s").exists
    for user in admins(host):
        assert "microk8s" in host.user(user).groups, f"{user} is not in the microk8s group"


def test_ufw_opens_apiserver_when_active(host):
    status = host.run("ufw status")
    if status.rc != 0 or "Status: active" not in status.stdout:
        pytest.skip("ufw is not active on this host")
    assert "16443/tcp" in status.stdout and "25000/tcp" in status.stdout
