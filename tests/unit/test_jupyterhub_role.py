"""The jupyterhub role rendered offline (playbooks/labs.yml, render-only mode) for classes of 3 and
30 learners, then checked object by object: the hub and its proxy live in the labs namespace; the
hub's RBAC reads pods and events cluster-wide and creates and deletes only in learner namespaces,
never a Secret; every object passes the Kubernetes 1.34 OpenAPI schema (strict). The rendered
jupyterhub_config.py is loaded by JupyterHub's own config loader (traitlets), a real KubeSpawner
built from it makes learner ana's pod manifest (no cluster: a stand-in user, no API call), and its
authenticator checks real passwords against the hashes of the rendered Secret. A one-person lab
renders no hub; bad settings stop the run with every problem named and nothing rendered.

What a real API server does with these objects (PodSecurity admitting the notebook, the
NetworkPolicies enforced, a login and a spawn through the proxy) is for tests/e2e."""

from __future__ import annotations

import asyncio
import base64
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import harness  # tests/unit/platform (conftest.py)
import pytest
import yaml

pytestmark = pytest.mark.timeout(900)

PLAYBOOK = harness.ROOT / "playbooks" / "labs.yml"
SMALL = ["ana", "ben", {"name": "gpu-user", "gpus": 1}]
BIG: list[Any] = [f"student-{i:02d}" for i in range(1, 30)] + [{"name": "x" * 55}]  # the longest name allowed
E2E = {
    "jupyterhub_hub_image": "mllab.local/e2e/jupyterhub:6.1.1",
    "jupyterhub_proxy_image": "mllab.local/e2e/configurable-http-proxy:5.3.0",
    "jupyterhub_notebook_image": "mllab.local/e2e/jupyterlab:4.6.6",
    "jupyterhub_image_pull_policy": "Never",
}
CASES = {
    "hub-3": {"labs_enabled": False, "jupyterhub_enabled": True, "mllab_learners": SMALL},
    "hub-30": {
        "labs_enabled": False,
        "jupyterhub_enabled": True,
        "mllab_learners": BIG,
        "platform_common_ingress_enabled": False,
        **E2E,
    },
    "solo": {"labs_enabled": False, "jupyterhub_enabled": True, "mllab_learners": []},
    "hub-bad": {
        "labs_enabled": False,
        "jupyterhub_enabled": True,
        "mllab_learners": ["ana"],
        "jupyterhub_proxy_image": "quay.io/jupyterhub/configurable-http-proxy:latest",
        "jupyterhub_notebook_resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "6", "memory": "4Gi"},
        },
        "jupyterhub_authenticator_class": "not a class",
        "jupyterhub_idle_timeout": -5,
        "jupyterhub_notebook_pvc": "Bad_Name",
        "platform_common_ingress_max_body_size": 0,
    },
    # Caught by meta/argument_specs.yml when the role starts (choices).
    "hub-bad-choice": {
        "labs_enabled": False,
        "jupyterhub_enabled": True,
        "mllab_learners": ["ana"],
        "jupyterhub_gpu_profile": "sometimes",
        # and, found by the same pre-task check: a hub that lets anyone in, behind the Ingress
        "jupyterhub_authenticator_class": "jupyterhub.auth.DummyAuthenticator",
    },
}
HUB_NS = "ml-labs"


@pytest.fixture(scope="module")
def runs() -> dict[str, harness.Run]:
    return harness.render_playbook(PLAYBOOK, CASES)


def _ok(runs, case: str) -> harness.Run:
    run = runs[case]
    assert run.rc == 0, run.output[-3000:]
    return run


@pytest.fixture(scope="module")
def small(runs) -> harness.Run:
    return _ok(runs, "hub-3")


@pytest.fixture(scope="module")
def big(runs) -> harness.Run:
    return _ok(runs, "hub-30")


def _hub(run: harness.Run) -> list[dict[str, Any]]:
    return [o for o in run.objects if o["_bundle"] == "jupyterhub"]


def _names(entries: list[Any]) -> list[str]:
    return [e["name"] if isinstance(e, dict) else e for e in entries]


def test_the_hub_and_the_proxy_are_in_the_labs_namespace(small):
    objects = _hub(small)
    namespaced = {(o["kind"], o["metadata"]["name"]) for o in objects if o["metadata"].get("namespace") == HUB_NS}
    assert namespaced == {
        ("ServiceAccount", "jupyterhub"),
        ("Secret", "jupyterhub-secret"),
        ("Secret", "jupyterhub-passwords"),
        ("ConfigMap", "jupyterhub-config"),
        ("PersistentVolumeClaim", "jupyterhub-db"),
        ("Deployment", "hub"),
        ("Deployment", "proxy"),
        ("Service", "hub"),
        ("Service", "proxy-public"),
        ("Service", "proxy-api"),
        ("Ingress", "jupyterhub"),
    }
    elsewhere = {o["metadata"].get("namespace") for o in objects} - {HUB_NS}
    assert elsewhere == {None} | {f"learner-{n}" for n in _names(SMALL)}
    ports = {o["metadata"]["name"]: o["spec"]["ports"] for o in objects if o["kind"] == "Service"}
    assert [(p["port"], p["targetPort"]) for p in ports["hub"]] == [(8081, "http")]
    assert [(p["port"], p["targetPort"]) for p in ports["proxy-public"]] == [(80, "http")]
    assert [(p["port"], p["targetPort"]) for p in ports["proxy-api"]] == [(8001, "api")]
    ingress = small.get("Ingress", "jupyterhub", HUB_NS)
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/jupyterhub" and path["backend"]["service"]["name"] == "proxy-public"
    # the request-size cap of every Ingress (platform_common_ingress_max_body_size, default 64m)
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "64m"
    assert (small.render_dir / "jupyterhub.yaml").is_file()
    assert stat.S_IMODE((small.render_dir / "jupyterhub.yaml").stat().st_mode) == 0o600


def test_the_proxy_takes_its_token_from_the_secret_and_sends_everything_to_the_hub(small):
    pod = small.get("Deployment", "proxy", HUB_NS)["spec"]["template"]["spec"]
    (chp,) = pod["containers"]
    args = chp["command"]
    hub = "http://hub.ml-labs.svc.cluster.local:8081"
    assert args[0] == "configurable-http-proxy" and "--api-ip=0.0.0.0" in args
    assert f"--default-target={hub}" in args and f"--error-target={hub}/jupyterhub/hub/error" in args
    token = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in chp["env"]}
    assert token == {"CONFIGPROXY_AUTH_TOKEN": {"name": "jupyterhub-secret", "key": "proxy-token"}}
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and chp["securityContext"]["capabilities"] == {
        "drop": ["ALL"]
    }


def test_the_hub_runs_as_non_root_with_its_config_passwords_and_database(small):
    pod = small.get("Deployment", "hub", HUB_NS)["spec"]["template"]["spec"]
    (hub,) = pod["containers"]
    assert pod["serviceAccountName"] == "jupyterhub"
    context = pod["securityContext"] | hub["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 1000
    assert context["allowPrivilegeEscalation"] is False and context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in hub["env"]}
    assert env == {
        "JPY_COOKIE_SECRET": {"name": "jupyterhub-secret", "key": "cookie-secret"},
        "CONFIGPROXY_AUTH_TOKEN": {"name": "jupyterhub-secret", "key": "proxy-token"},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["passwords"]["secret"]["secretName"] == "jupyterhub-passwords"
    assert volumes["db"]["persistentVolumeClaim"]["claimName"] == "jupyterhub-db"
    mounts = {m["name"]: m["mountPath"] for m in hub["volumeMounts"]}
    assert mounts["db"] == "/srv/jupyterhub" and mounts["passwords"] == "/etc/jupyterhub/passwords"
    # JupyterHub takes a hex cookie secret of 32 bytes.
    cookie = base64.b64decode(small.get("Secret", "jupyterhub-secret", HUB_NS)["data"]["cookie-secret"]).decode()
    assert len(bytes.fromhex(cookie)) == 32


def test_the_e2e_settings_reach_every_image_and_pull_policy(big):
    for name in ("hub", "proxy"):
        (container,) = big.get("Deployment", name, HUB_NS)["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith("mllab.local/e2e/") and container["imagePullPolicy"] == "Never"
    assert not big.of_kind("Ingress")


# --- RBAC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["hub-3", "hub-30"])
def test_the_hub_reads_cluster_wide_and_writes_only_in_learner_namespaces(runs, case):
    run = _ok(runs, case)
    roster = _names(SMALL if case == "hub-3" else BIG)
    objects = _hub(run)
    (cluster_role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    for rule in cluster_role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert set(rule["resources"]) <= {"pods", "events"} and rule["apiGroups"] == [""], rule
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "jupyterhub", "namespace": HUB_NS}]

    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    assert sorted(roles) == sorted(f"learner-{n}" for n in roster)
    for ns, role in roles.items():
        granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
        assert granted == {
            ("pods", "create"),
            ("pods", "delete"),
            ("persistentvolumeclaims", "create"),
            ("persistentvolumeclaims", "get"),
        }, ns
        (rb,) = [o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == ns]
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mllab-jupyterhub"}
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "jupyterhub", "namespace": HUB_NS}]
    for o in objects:
        for rule in o.get("rules", []):
            assert "secrets" not in rule["resources"] and "*" not in rule["resources"] + rule["verbs"], rule


@pytest.mark.parametrize("case", ["hub-3", "hub-30"])
def test_every_object_matches_the_kubernetes_openapi_schema(runs, case):
    import kubernetes_validate

    run = _ok(runs, case)
    assert len(_hub(run)) >= 13
    for obj in run.objects:
        try:
            kubernetes_validate.validate(harness.strip_private(obj), harness.KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")


# --- the learners' NetworkPolicies (roles/classroom, with the hub on) ---------------------------


def test_only_notebook_pods_reach_the_hub_and_the_api(small):
    for name in _names(SMALL):
        ns = f"learner-{name}"
        policies = {
            o["metadata"]["name"]: o["spec"]
            for o in small.objects
            if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == ns
        }
        notebook = policies.pop("mllab-notebook")
        into = policies.pop("mllab-notebook-from-hub")
        assert notebook["podSelector"] == {"matchLabels": {"component": "singleuser-server"}}
        assert notebook["policyTypes"] == ["Egress"]
        to_hub, to_api = notebook["egress"]
        assert to_hub["to"] == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": HUB_NS}},
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "jupyterhub", "app.kubernetes.io/component": "hub"}
                },
            }
        ]
        assert to_hub["ports"] == [{"protocol": "TCP", "port": 8081}]
        assert to_api == {"to": [{"ipBlock": {"cidr": "192.0.2.1/32"}}], "ports": [{"protocol": "TCP", "port": 16443}]}
        # into the notebook: the hub and the proxy of the hub's namespace, on the notebook's port only
        assert into["podSelector"] == notebook["podSelector"]
        assert into["policyTypes"] == ["Ingress"]
        (rule,) = into["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8888}]
        (peer,) = rule["from"]
        assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": HUB_NS}}
        assert sorted((e["key"], tuple(e["values"])) for e in peer["podSelector"]["matchExpressions"]) == [
            ("app.kubernetes.io/component", ("hub", "proxy")),
            ("app.kubernetes.io/name", ("jupyterhub",)),
        ]
        # every other policy selects all the learner's pods and opens no address range
        for spec in policies.values():
            peers = [
                p
                for rule in spec.get("egress", []) + spec.get("ingress", [])
                for p in rule.get("to", rule.get("from", []))
            ]
            assert not [p for p in peers if "ipBlock" in p], spec
        # no other pod of the labs namespace reaches the learner's pods
        sources = [p for rule in policies["mllab-from-platform"]["ingress"] for p in rule["from"]]
        assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": HUB_NS}}} not in sources


# --- passwords ------------------------------------------------------------------------------------


def _passwords(run: harness.Run) -> dict[str, str]:
    out = {}
    for name in run.settings["mllab_learners"]:
        name = name["name"] if isinstance(name, dict) else name
        path = run.artifacts_dir / "class" / name / "hub-password"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        out[name] = path.read_text().strip()
    return out


def test_the_hub_holds_salted_hashes_and_no_password_is_rendered_or_printed(small):
    passwords = _passwords(small)
    assert len(set(passwords.values())) == len(SMALL) and all(len(p) == 32 for p in passwords.values())
    stored = {
        k: base64.b64decode(v).decode() for k, v in small.get("Secret", "jupyterhub-passwords", HUB_NS)["data"].items()
    }
    assert sorted(stored) == sorted(passwords)
    salts = {v.split("$")[2] for v in stored.values()}
    assert all(v.startswith("pbkdf2_sha256$600000$") for v in stored.values()) and len(salts) == len(SMALL)
    bundle = (small.render_dir / "jupyterhub.yaml").read_text()
    for password in passwords.values():
        assert password not in bundle and password not in small.output
    for secret in small.secrets.values():
        assert secret not in small.output


# --- jupyterhub_config.py, loaded as JupyterHub loads it ------------------------------------------


@pytest.fixture(scope="module")
def hub_config(small, tmp_path_factory) -> tuple[Any, Path]:
    """The rendered config loaded by traitlets' PyFileConfigLoader (JupyterHub's loader), and a
    folder holding the rendered Secret's hashes as the hub's pod sees them."""
    from traitlets.config.loader import PyFileConfigLoader

    folder = tmp_path_factory.mktemp("hub")
    text = small.get("ConfigMap", "jupyterhub-config", HUB_NS)["data"]["jupyterhub_config.py"]
    compile(text, "jupyterhub_config.py", "exec")
    (folder / "jupyterhub_config.py").write_text(text)
    (folder / "passwords").mkdir()
    for name, value in small.get("Secret", "jupyterhub-passwords", HUB_NS)["data"].items():
        (folder / "passwords" / name).write_bytes(base64.b64decode(value))
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(folder)).load_config()
    return config, folder / "passwords"


@pytest.fixture
def no_cluster(monkeypatch):
    """KubeSpawner loads a kubeconfig when it is built (it makes no call then): one whose API server
    does not answer, so nothing here can reach a cluster."""
    import kubernetes_asyncio.config.kube_config as kube_config

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # read from $KUBECONFIG when the module is imported: set where load_kube_config reads it
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(harness.UNREACHABLE_KUBECONFIG))


async def _spawner(config: Any, name: str) -> Any:
    """A real KubeSpawner of the config's class for `name` (built in a running loop, as in the hub);
    the user and hub are stand-ins (no database, no API call)."""
    user = SimpleNamespace(name=name, id=7, url=f"/jupyterhub/user/{name}/", escaped_name=name)
    hub = SimpleNamespace(
        public_host="",
        url="http://hub:8081/jupyterhub/hub/",
        base_url="/jupyterhub/",
        api_url="http://hub:8081/hub/api",
    )
    spawner = config.JupyterHub.spawner_class(config=config, user=user, hub=hub, _mock=True)
    spawner.api_token = "not-a-token"
    return spawner


def _run(coro_fn, *args):
    async def main():
        return await coro_fn(*args)

    return asyncio.run(main())


def test_the_config_sets_the_hub_and_the_proxy(hub_config):
    config, _ = hub_config
    assert config.ConfigurableHTTPProxy.should_start is False
    assert config.ConfigurableHTTPProxy.api_url == "http://proxy-api.ml-labs.svc.cluster.local:8001"
    assert config.JupyterHub.hub_connect_url == "http://hub.ml-labs.svc.cluster.local:8081"
    assert config.JupyterHub.base_url == "/jupyterhub/"
    assert config.Authenticator.allowed_users == set(_names(SMALL)) and config.Authenticator.admin_users == set()
    assert config.Authenticator.allow_existing_users is False
    (culler,) = config.JupyterHub.services
    assert culler["command"][1:] == ["-m", "jupyterhub_idle_culler", "--timeout=3600"]
    (role,) = config.JupyterHub.load_roles
    assert role["services"] == ["idle-culler"]
    assert sorted(role["scopes"]) == ["delete:servers", "list:users", "read:servers", "read:users:activity"]


def test_a_real_kubespawner_puts_anas_notebook_in_her_namespace_restricted(hub_config, no_cluster):
    import kubernetes_validate
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    config, _ = hub_config

    async def manifests():
        spawner = await _spawner(config, "ana")
        # as the API server would receive them (the client's own serialization)
        api = ApiClient()
        pod = api.sanitize_for_serialization(await spawner.get_pod_manifest())
        pvc = api.sanitize_for_serialization(spawner.get_pvc_manifest())
        await api.close()
        return spawner, pod, pvc

    spawner, pod, pvc = _run(manifests)
    assert isinstance(spawner, KubeSpawner) and hasattr(KubeSpawner, "_ensure_namespace")  # overridden by the config
    assert spawner.namespace == "learner-ana"
    for obj in (pod, pvc):
        kubernetes_validate.validate(obj, harness.KUBERNETES_VERSION, strict=True)
    spec = pod["spec"]
    assert pod["metadata"]["labels"]["component"] == "singleuser-server"
    assert pod["metadata"]["labels"]["mllab.io/learner"] == "ana"
    assert spec["serviceAccountName"] == "mllab-learner" and spec["automountServiceAccountToken"] is True
    # PodSecurity `restricted`: non-root, no privilege escalation, every capability dropped, RuntimeDefault
    assert spec["securityContext"] == {
        "fsGroup": 100,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (notebook,) = spec["containers"]
    assert notebook["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 100,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("initContainers")
    assert all(
        set(v) <= {"name", "persistentVolumeClaim", "emptyDir", "secret", "configMap", "projected"}
        for v in spec["volumes"]
    )
    assert notebook["args"] == ["jupyterhub-singleuser"]
    assert notebook["image"] == "quay.io/jupyter/scipy-notebook:python-3.13.14"
    assert {"name": "notebook", "persistentVolumeClaim": {"claimName": "notebook"}} in spec["volumes"]
    assert {"name": "notebook", "mountPath": "/home/jovyan/work"} in notebook["volumeMounts"]
    # within the classroom LimitRange (max cpu 4, memory 8Gi)
    assert notebook["resources"] == {
        "limits": {"cpu": 2.0, "memory": 4294967296},
        "requests": {"cpu": 0.5, "memory": 1073741824},
    }
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert env["MLLAB_LEARNER"] == "ana" and env["MLLAB_TRAINING_NAMESPACE"] == "learner-ana"
    assert env["MLLAB_SERVING_NAMESPACE"] == "learner-ana" and env["MLLAB_GPUS"] == "0"
    assert env["MLLAB_SERVICE_ACCOUNT"] == "mllab-lab-runner" and env["MLLAB_WORK_PVC"] == "checkpoints"
    assert env["MLLAB_BACKEND"] == "k8s" and env["MLLAB_MODELS_PVC"] == "models"
    assert env["MLFLOW_TRACKING_URI"].startswith("http://mlflow.mlflow.svc.cluster.local:5000")
    assert env["JUPYTERHUB_API_URL"] == "http://hub:8081/hub/api"
    assert notebook["envFrom"] == [{"secretRef": {"name": "mlflow-credentials", "optional": True}}]
    assert pvc["metadata"]["name"] == "notebook" and pvc["spec"]["resources"]["requests"] == {"storage": "5Gi"}


def test_the_spawner_never_creates_a_namespace_and_refuses_a_name_without_one(hub_config, no_cluster):
    from tornado import web

    config, _ = hub_config

    async def ensure(name):
        spawner = await _spawner(config, name)
        spawner.api = None  # any API call would fail loudly
        await spawner._ensure_namespace()
        return spawner.namespace

    assert _run(ensure, "ana") == "learner-ana"
    with pytest.raises(web.HTTPError) as err:
        _run(ensure, "mallory")
    assert err.value.status_code == 403


def test_only_learners_with_gpus_get_the_gpu_profile(hub_config, no_cluster):
    config, _ = hub_config
    profiles = config.KubeSpawner.profile_list
    assert profiles(_run(_spawner, config, "ana")) == []
    gpu = {p["slug"]: p for p in profiles(_run(_spawner, config, "gpu-user"))}["gpu"]["kubespawner_override"]
    assert gpu["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert gpu["image"] == "quay.io/jupyter/pytorch-notebook:cuda12-python-3.13.14"


def test_the_authenticator_accepts_exactly_the_learners_own_password(small, hub_config):
    config, folder = hub_config
    auth = config.JupyterHub.authenticator_class(config=config)
    auth.password_dir = str(folder)
    passwords = _passwords(small)

    def login(name: str, password: str) -> Any:
        return asyncio.run(auth.get_authenticated_user(None, {"username": name, "password": password}))

    assert login("ana", passwords["ana"])["name"] == "ana"
    assert login("ana", passwords["ben"]) is None
    assert login("ana", "") is None
    assert login("mallory", passwords["ana"]) is None
    assert not auth.check_allowed("mallory") and auth.check_allowed("ana")


# --- the notebook image is roles/jupyter's --------------------------------------------------------


def test_the_notebook_image_fallbacks_are_the_jupyter_roles_pins():
    hub = yaml.safe_load((harness.ROOT / "roles/jupyterhub/defaults/main.yml").read_text())
    jupyter = yaml.safe_load((harness.ROOT / "roles/jupyter/defaults/main.yml").read_text())
    assert f"default('{jupyter['jupyter_image']}')" in hub["jupyterhub_notebook_image"]
    assert f"default('{jupyter['jupyter_gpu_image']}')" in hub["jupyterhub_notebook_gpu_image"]


# --- no class, bad settings -----------------------------------------------------------------------


def test_a_one_person_lab_renders_no_hub(runs):
    run = runs["solo"]
    assert run.rc == 0, run.output[-3000:]
    assert not _hub(run) and not (run.render_dir / "jupyterhub.yaml").exists()


def test_bad_settings_name_every_problem_and_render_nothing(runs):
    run = runs["hub-bad"]
    assert run.rc != 0
    expected = [
        "jupyterhub_proxy_image = 'quay.io/jupyterhub/configurable-http-proxy:latest' uses the moving tag",
        "jupyterhub_notebook_resources.limits.cpu = 6 is above classroom_limit_range.max.cpu = 4",
        'jupyterhub_authenticator_class = "not a class" must be mllab or the import path',
        "jupyterhub_idle_timeout = -5 must be a whole number of seconds",
        "jupyterhub_notebook_pvc = 'Bad_Name' is not a valid Kubernetes name",
        "platform_common_ingress_max_body_size = 0 means no limit to nginx, and every Ingress of the kit caps",
    ]
    assert f"JupyterHub checks found {len(expected)} problem(s); nothing was applied" in run.output, run.output[-3000:]
    for text in expected:
        assert text in run.output, f"{text!r} not in the output"
    assert not run.objects, "checked before the classroom renders (or applies) anything"


def test_a_setting_off_its_choices_is_refused_when_the_role_starts(runs):
    run = runs["hub-bad-choice"]
    assert run.rc != 0 and "jupyterhub_gpu_profile" in run.output and "sometimes" in run.output
    assert "auto, always, never" in run.output, run.output[-3000:]
    assert not (run.render_dir / "jupyterhub.yaml").exists()


def test_a_hub_that_lets_anyone_in_is_refused_behind_the_ingress(runs):
    run = runs["hub-bad-choice"]
    out = " ".join(run.output.split())
    assert run.rc != 0
    assert (
        'jupyterhub_authenticator_class = "jupyterhub.auth.DummyAuthenticator" lets anyone in (any name, any password)'
        " and platform_common_ingress_enabled: true would publish the hub on the Ingress: use mllab" in out
    ), run.output[-3000:]
    assert "or set platform_common_ingress_enabled: false" in out
    assert not run.objects


# --- the filters --------------------------------------------------------------------------------


def test_the_password_hash_is_salted_per_learner_and_per_lab_and_stable():
    import hashlib

    import mllab_hub  # plugins/filter (conftest.py)

    one = mllab_hub.mllab_hub_password_hash("s3cret", "ana", "lab-key", 100_000)
    assert one == mllab_hub.mllab_hub_password_hash("s3cret", "ana", "lab-key", 100_000)  # a rerun changes nothing
    assert one != mllab_hub.mllab_hub_password_hash("s3cret", "ben", "lab-key", 100_000)
    assert one != mllab_hub.mllab_hub_password_hash("s3cret", "ana", "other-lab", 100_000)
    scheme, rounds, salt, digest = one.split("$")
    assert (scheme, rounds) == ("pbkdf2_sha256", "100000")
    want = hashlib.pbkdf2_hmac("sha256", b"s3cret", base64.b64decode(salt), 100_000)
    assert base64.b64decode(digest) == want and "s3cret" not in one
    with pytest.raises(ValueError, match="ana"):
        mllab_hub.mllab_hub_password_hash("", "ana", "lab-key")


def test_limits_above_the_limit_range_max_are_named():
    import mllab_platform  # plugins/filter (conftest.py)

    found = mllab_platform.mllab_max_problems(
        {"cpu": "6", "memory": "4Gi"}, {"cpu": "4", "memory": "8Gi"}, "lim", "max"
    )
    assert found == ["lim.cpu = 6 is above max.cpu = 4 (the namespace would refuse the pod): lower it or raise max.cpu"]
    assert mllab_platform.mllab_max_problems({"cpu": "4000m"}, {"cpu": "4"}, "lim", "max") == []
