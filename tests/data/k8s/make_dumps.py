"""Write the kubectl-shaped dumps of this folder from the lab's objects (see README.md).

Run from the repository root: ``python tests/data/k8s/make_dumps.py``. The files are
committed; the tests read them byte for byte and never run this script.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from npanalytics.lab.k8s_objects import cluster_objects
from npanalytics.lab.scenario import scenario_from_dict

HERE = Path(__file__).resolve().parent

SCENARIO = {
    "name": "dumps",
    "nodes": [
        {"name": "node-a", "zone": "zone-a"},
        {"name": "node-b", "zone": "zone-b"},
        {"name": "node-c"},
    ],
    "pods": [
        {"name": "web-1", "node": "node-a", "labels": {"app": "web"}},
        {"name": "web-2", "node": "node-a", "labels": {"app": "web"}, "ready": False},
        {"name": "web-3", "node": "node-b", "labels": {"app": "web"}},
        {"name": "web-4", "node": "node-b", "labels": {"app": "web"},
         "ready": False, "serving": True, "terminating": True},
        {"name": "api-1", "node": "node-c", "labels": {"app": "api"}},
    ],
    "services": [
        {"name": "web", "selector": {"app": "web"}, "externalTrafficPolicy": "Local",
         "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
         "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                   {"name": "metrics", "port": 9090, "targetPort": 9091, "nodePort": 30090}]},
        {"name": "api", "namespace": "shop", "selector": {"app": "api"},
         "internalTrafficPolicy": "Local",
         "ports": [{"port": 443, "targetPort": 8443, "nodePort": 30443}]},
        {"name": "nothing", "selector": {"app": "none"},
         "ports": [{"port": 81, "nodePort": 30081}]},
    ],
    "traffic": {"requests": 10},
}


def kubectl_json(obj: object) -> str:
    """kubectl -o json: Go's json.MarshalIndent of the unstructured object (sorted keys,
    4-space indent, HTML characters escaped) and a final newline."""
    text = json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text + "\n"


_SINGLE = re.compile(r"'((?:[^'\n]|'')*)'")


def kubectl_yaml(obj: object) -> str:
    """kubectl -o yaml (sigs.k8s.io/yaml): sorted keys, 2-space indent, list items at the
    parent's indentation, ambiguous strings double-quoted."""
    text = yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, width=10**6, allow_unicode=True)
    return _SINGLE.sub(lambda m: json.dumps(m.group(1).replace("''", "'")), text)


def kubectl_list(items: list[dict]) -> dict:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def main() -> None:
    objects = cluster_objects(scenario_from_dict(SCENARIO), include_endpoints=True)
    for piece in objects["endpointslices"]:
        # the API stores an empty slice's lists as null, and kubectl prints them so
        # (the lab writes [] because the kubernetes client's models reject null)
        for key in ("endpoints", "ports"):
            if not piece[key]:
                piece[key] = None
    everything = objects["services"] + objects["endpointslices"] + objects["pods"] + objects["nodes"]
    (HERE / "cluster.json").write_text(kubectl_json(kubectl_list(everything)))
    (HERE / "cluster.yaml").write_text(kubectl_yaml(kubectl_list(everything)))
    (HERE / "endpoints-legacy.json").write_text(kubectl_json(kubectl_list(objects["endpoints"])))
    web_1 = next(p for p in objects["pods"] if p["metadata"]["name"] == "web-1")
    (HERE / "pod-web-1.yaml").write_text(kubectl_yaml(web_1))
    web = [objects["services"][0]] + [s for s in objects["endpointslices"]
                                       if s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"]
    (HERE / "web-multi-doc.yaml").write_text("---\n".join(kubectl_yaml(o) for o in web))


if __name__ == "__main__":
    main()
