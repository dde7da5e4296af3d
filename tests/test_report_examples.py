"""examples/report-cronjob.yaml: valid Kubernetes objects that run ``npanalytics report`` read-only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from npanalytics.cli import _build_parser

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "examples" / "report-cronjob.yaml"
API_VERSIONS = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "CronJob": "batch/v1",
}
READ_ONLY = {"get", "list", "watch"}


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object per kind"
    return by_kind


def test_every_object_has_its_api_version_and_a_name(objects):
    assert {k: o["apiVersion"] for k, o in objects.items()} == API_VERSIONS
    for kind, obj in objects.items():
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), kind
        if kind not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == objects["Namespace"]["metadata"]["name"], kind


def test_rbac_is_read_only_on_what_the_report_reads(objects):
    rules = objects["ClusterRole"]["rules"]
    granted = {(group, resource) for r in rules for group in r["apiGroups"] for resource in r["resources"]}
    assert {("", "services"), ("", "pods"), ("", "nodes"), ("discovery.k8s.io", "endpointslices")} <= granted
    assert not {res for _, res in granted} & {"secrets", "configmaps", "*"}
    for rule in rules:
        assert set(rule["verbs"]) <= READ_ONLY
    binding = objects["ClusterRoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": objects["ClusterRole"]["metadata"]["name"]}
    sa = objects["ServiceAccount"]["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]


def test_cronjob_runs_a_valid_report_command_into_its_volume(objects):
    cron = objects["CronJob"]["spec"]
    assert len(cron["schedule"].split()) == 5
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["image"] and ":" in container["image"]
    command = container["command"]
    assert command[:2] == ["npanalytics", "report"]
    args = _build_parser().parse_args(command[1:])  # the real parser accepts it
    assert args.fail_on == "critical" and args.dated and set(args.formats) == {"html", "json", "md"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    out_volume = volumes[mounts[str(args.out)]]
    assert out_volume["persistentVolumeClaim"]["claimName"] == objects["PersistentVolumeClaim"]["metadata"]["name"]
    kubeconfig = Path(args.kubeconfig)
    config_volume = volumes[mounts[str(kubeconfig.parent)]]
    configmap = objects["ConfigMap"]
    assert config_volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in mounts  # matplotlib and numba caches need a writable place


def test_the_kubeconfig_uses_the_pods_service_account(objects):
    config = yaml.safe_load(objects["ConfigMap"]["data"]["kubeconfig"])
    assert config["kind"] == "Config" and config["apiVersion"] == "v1"
    (user,) = config["users"]
    assert user["user"] == {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == "https://kubernetes.default.svc"
    assert config["current-context"] == config["contexts"][0]["name"]


_PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "bytes": str,
               "datetime": str, "date": str}
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")  # 'list[V1X]' in older clients, 'List[V1X]' in newer ones
_DICT = re.compile(r"^(?:dict\(|Dict\[)\w+, (.+)[)\]]$")


def _as_model(data, type_name: str, where: str):
    """Build the kubernetes client's model of ``data``: unknown or mistyped fields fail, naming where."""
    import kubernetes.client

    if match := _LIST.match(type_name):
        assert isinstance(data, list), f"{where}: expected a list"
        return [_as_model(item, match[1], f"{where}[{i}]") for i, item in enumerate(data)]
    if match := _DICT.match(type_name):
        assert isinstance(data, dict), f"{where}: expected a mapping"
        return {k: _as_model(v, match[1], f"{where}.{k}") for k, v in data.items()}
    if type_name in _PRIMITIVES:
        assert isinstance(data, _PRIMITIVES[type_name]), f"{where}: expected {type_name}, got {data!r}"
        return data
    model = getattr(kubernetes.client, type_name)
    assert isinstance(data, dict), f"{where}: expected a {type_name} mapping"
    unknown = set(data) - set(model.attribute_map.values())
    assert not unknown, f"{where}: fields {sorted(unknown)} are not in {type_name}"
    kwargs = {attr: _as_model(data[key], model.openapi_types[attr], f"{where}.{key}")
              for attr, key in model.attribute_map.items() if key in data}
    return model(**kwargs)  # the client checks required fields and enums


def test_every_object_follows_the_kubernetes_api_schema(objects):
    """Each object builds the official client's model: no unknown field, no wrong type, no missing required one."""
    for kind, obj in objects.items():
        _as_model(obj, f"V1{kind}", kind)


def test_the_schema_check_catches_a_misplaced_field(objects):
    import copy

    broken = copy.deepcopy(objects["CronJob"])
    container = broken["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    container["volumeMount"] = container.pop("volumeMounts")  # a typo kubectl would reject
    with pytest.raises(AssertionError, match=r"containers\[0\]: fields \['volumeMount'\] are not in V1Container"):
        _as_model(broken, "V1CronJob", "CronJob")
    broken = copy.deepcopy(objects["CronJob"])
    del broken["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ValueError, match="name"):
        _as_model(broken, "V1CronJob", "CronJob")


def test_the_kubernetes_client_loads_the_kubeconfig_with_the_token_file(objects, tmp_path):
    import kubernetes

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("pod-token-123")
    ca.write_text("not checked until a connection is made")
    text = objects["ConfigMap"]["data"]["kubeconfig"]
    text = text.replace("/var/run/secrets/kubernetes.io/serviceaccount/token", str(token))
    text = text.replace("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", str(ca))
    (tmp_path / "kubeconfig").write_text(text)
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(tmp_path / "kubeconfig"), client_configuration=configuration)
    assert configuration.host == "https://kubernetes.default.svc"
    assert "Bearer pod-token-123" in configuration.api_key.values()  # key name differs by client version
    assert configuration.ssl_ca_cert == str(ca)
