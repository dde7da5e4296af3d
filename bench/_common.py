"""Helpers shared by the benchmarks (imported from the bench/ folder they run in)."""

from __future__ import annotations

from npanalytics.lab.scenario import Scenario, scenario_from_dict


def spread_scenario(name: str, nodes: int, pods_per_node: int, services: int) -> Scenario:
    """A lab scenario of ``nodes`` nodes in 3 zones, ``pods_per_node`` pods on each,
    and ``services`` NodePort Services each selecting an equal share of the pods.

    Parameters
    ----------
    name : str
        The scenario's name.
    nodes, pods_per_node, services : int
        Its size.

    Returns
    -------
    Scenario
        The scenario (only its objects are used: no traffic is run).
    """
    pods = [{"name": f"p-{i}-{j}", "node": f"node-{i}", "labels": {"app": f"svc-{(i * pods_per_node + j) % services}"}}
            for i in range(nodes) for j in range(pods_per_node)]
    return scenario_from_dict({
        "name": name,
        "nodes": [{"name": f"node-{i}", "zone": f"zone-{i % 3}"} for i in range(nodes)],
        "pods": pods,
        "services": [{"name": f"svc-{k}", "selector": {"app": f"svc-{k}"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30000 + k}]}
                     for k in range(services)],
        "traffic": {"requests": 10},
    })
