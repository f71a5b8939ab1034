"""The labs role's decisions (plugins/filter/mllab_labs.py): the learner kubeconfig
built from an admin one, MLflow's URL on the control host, the guides' ConfigMap keys, the
1 MiB ConfigMap limit, the role's settings."""

from __future__ import annotations

import base64

import mllab_labs  # plugins/filter (conftest.py)
import pytest
import yaml

ADMIN = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [
        {"name": "other", "cluster": {"server": "https://10.9.9.9:6443"}},
        {"name": "lab", "cluster": {"server": "https://192.0.2.11:16443", "certificate-authority-data": "Q0E="}},
    ],
    "users": [{"name": "admin", "user": {"client-certificate-data": "QQ==", "client-key-data": "Sw=="}}],
    "contexts": [
        {"name": "lab", "context": {"cluster": "lab", "user": "admin"}},
        {"name": "other", "context": {"cluster": "other", "user": "admin"}},
    ],
    "current-context": "lab",
}


def test_learner_kubeconfig_keeps_the_server_and_ca_and_nothing_of_the_admin():
    cfg = mllab_labs.mllab_learner_kubeconfig(yaml.safe_dump(ADMIN), "tok3n", "ml-labs")
    (cluster,) = cfg["clusters"]
    assert cluster["cluster"] == {"server": "https://192.0.2.11:16443", "certificate-authority-data": "Q0E="}
    assert cfg["users"] == [{"name": "mllab-learner", "user": {"token": "tok3n"}}]
    ctx = cfg["contexts"][0]["context"]
    assert ctx["namespace"] == "ml-labs" and cfg["current-context"] == cfg["contexts"][0]["name"]
    text = yaml.safe_dump(cfg)
    assert "client-key-data" not in text and "QQ==" not in text


def test_learner_kubeconfig_follows_the_chosen_context_and_embeds_a_ca_file(tmp_path):
    (tmp_path / "ca.crt").write_bytes(b"PEM")
    admin = dict(
        ADMIN, clusters=[{"name": "other", "cluster": {"server": "https://h:1", "certificate-authority": "ca.crt"}}]
    )
    cfg = mllab_labs.mllab_learner_kubeconfig(
        yaml.safe_dump(admin), "t", "labs", user="student", context="other", path=str(tmp_path / "kubeconfig")
    )
    assert cfg["clusters"][0]["cluster"] == {"server": "https://h:1", "certificate-authority-data": "UEVN"}
    assert cfg["users"][0]["name"] == "student"


def test_learner_kubeconfig_refuses_an_empty_token_or_a_missing_context():
    with pytest.raises(ValueError, match="token is empty"):
        mllab_labs.mllab_learner_kubeconfig(yaml.safe_dump(ADMIN), "", "ml-labs")
    with pytest.raises(ValueError, match="no context named 'nope'"):
        mllab_labs.mllab_learner_kubeconfig(yaml.safe_dump(ADMIN), "t", "ml-labs", context="nope")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"cluster_ip": "10.96.4.7"}, "http://10.96.4.7:5000/mlflow"),
        ({"cluster_ip": "fd00::7"}, "http://[fd00::7]:5000/mlflow"),
        ({"cluster_ip": "10.96.4.7", "ingress_host": "lab.example.org"}, "http://lab.example.org/mlflow"),
        ({"ingress_host": "lab.example.org", "ingress_tls": True}, "https://lab.example.org/mlflow"),
        ({"cluster_ip": "None"}, "http://mlflow.mlflow.svc.cluster.local:5000/mlflow"),
        ({}, "http://mlflow.mlflow.svc.cluster.local:5000/mlflow"),
    ],
)
def test_host_tracking_uri(kwargs, expected):
    job = "http://mlflow.mlflow.svc.cluster.local:5000/mlflow"
    assert mllab_labs.mllab_host_tracking_uri(job, **kwargs) == expected


def test_host_tracking_uri_without_a_prefix():
    assert (
        mllab_labs.mllab_host_tracking_uri("http://mlflow.m.svc:5000", cluster_ip="10.0.0.1") == "http://10.0.0.1:5000"
    )


def test_guide_keys_and_manifest():
    keys = mllab_labs.mllab_guide_keys(["README.md", "06-serving/client.ipynb", "./01-gpu/README.md"])
    assert keys == {
        "guide.01-gpu__README.md": "01-gpu/README.md",
        "guide.06-serving__client.ipynb": "06-serving/client.ipynb",
        "guide.README.md": "README.md",
    }
    tsv = mllab_labs.mllab_guides_tsv(keys)
    assert tsv.endswith("\n") and "guide.README.md\tREADME.md\n" in tsv and len(tsv.splitlines()) == 3


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs.md", "a__b.md", "with space.md"])
def test_guide_keys_refuse_paths_that_cannot_be_shipped(bad):
    with pytest.raises(ValueError):
        mllab_labs.mllab_guide_keys([bad])


def test_dist_size_limit_is_one_mib_of_data_plus_binary():
    wheel = base64.b64encode(b"x" * 1000).decode()
    assert mllab_labs.mllab_dist_size_problems({"a": "y" * (1024 * 1024 - 1000)}, {"w.whl": wheel}) == []
    (problem,) = mllab_labs.mllab_dist_size_problems({"a": "y" * (1024 * 1024 - 999)}, {"w.whl": wheel})
    assert "1048577 bytes (wheel 1000" in problem and "labs_jupyter: false" in problem


GOOD = {
    "labs_venv": "/opt/mllab",
    "labs_cli_link": "/usr/local/bin/mllab",
    "labs_profile_file": "/etc/profile.d/mllab.sh",
    "labs_jupyter_python_base": "/home/jovyan/work/.mllab/python",
    "labs_jupyter_guides_dir": "/home/jovyan/work/labs",
    "labs_pip_extras": ["labs", "k8s"],
    "labs_jupyter_extras": [],
    "labs_pip_args": ["--index-url", "https://pypi.example/simple"],
    "labs_host_tracking_uri": "",
    "mllab_admins": ["ubuntu", "student_1"],
}


def test_good_settings_have_no_problem():
    assert mllab_labs.mllab_labs_problems(GOOD) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labs_venv": "opt/mllab"}, "labs_venv = 'opt/mllab' must be an absolute path"),
        ({"labs_profile_file": "/"}, "labs_profile_file = '/' must be an absolute path"),
        ({"labs_pip_extras": "labs,k8s"}, "labs_pip_extras = 'labs,k8s' must be a list of extras"),
        ({"labs_jupyter_extras": ["Labs!"]}, "labs_jupyter_extras"),
        ({"labs_pip_args": "--no-index"}, "labs_pip_args = '--no-index' must be a list"),
        ({"labs_host_tracking_uri": "mlflow:5000"}, "labs_host_tracking_uri = 'mlflow:5000' is not an http(s) URL"),
        ({"mllab_admins": "ubuntu"}, "mllab_admins = 'ubuntu' must be a list of Unix user names"),
    ],
)
def test_bad_settings_are_named(change, message):
    problems = mllab_labs.mllab_labs_problems(GOOD | change)
    assert len(problems) == 1 and message in problems[0], problems
