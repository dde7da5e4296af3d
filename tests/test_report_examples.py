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
