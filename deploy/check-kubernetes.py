#!/usr/bin/env python3
"""Checks deploy/kubernetes offline, as `kubectl apply -k` would build it.

- Every file the kustomization lists exists, and every manifest in the folder is listed.
- Every object, and the ConfigMap and Secret its generators make (tokens.env.example standing in
  for the operator's tokens.env), is valid for the Kubernetes version given: built-in kinds
  against Kubernetes' own schemas (kubernetes-validate, strict: an unknown field is an error),
  RabbitmqCluster and the CloudNativePG Cluster against their operators' CRD schemas, vendored
  in deploy/kubernetes/schemas/ (an unknown field is an error there too).
- References resolve: Secrets and ConfigMaps named by the services exist or are made by an
  operator, probes name a container port, Services, PodDisruptionBudgets and autoscalers select a
  Deployment's pods, and each service's memory request is at least its peak resident memory
  measured by the last `make bench` (docs/bench-results.md).

Usage: check-kubernetes.py [--kubernetes-version 1.32.0] [DIR]; exits 1 with one line per problem.
"""
import argparse
import base64
import copy
import gzip
import json
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Secrets the operators create for the engines the kustomization declares
OPERATOR_SECRETS = {"spotguard-db-app", "spotguard-rabbitmq-default-user"}
CUSTOM_KINDS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmq.com_v1beta1_RabbitmqCluster.json.gz",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_v1_Cluster.json.gz",
}


def strict(schema):
    """The CRD schema with unknown fields refused wherever the API server would prune them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_custom_schema(directory, name):
    with gzip.open(os.path.join(directory, "schemas", name), "rt") as f:
        schema = json.load(f)
    schema = strict(schema)
    # metadata is the API server's to check (an ObjectMeta), not the CRD's
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def generated(kustomization, directory):
    objects = []
    for g in kustomization.get("configMapGenerator", []):
        data = dict(item.split("=", 1) for item in g.get("literals", []))
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": data})
    for g in kustomization.get("secretGenerator", []):
        data = {}
        for env in g.get("envs", []):
            path = os.path.join(directory, env)
            if not os.path.exists(path):
                path += ".example"
            for line in open(path):
                line = line.strip()
                if line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    data[k] = base64.b64encode(v.encode()).decode()
        objects.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": g["name"]}, "type": "Opaque", "data": data})
    return objects


def bench_memory():
    """Peak RSS per service in MiB from the last `make bench` (docs/bench-results.md), {} when absent."""
    path = os.path.join(ROOT, "docs", "bench-results.md")
    text = open(path).read() if os.path.exists(path) else ""
    return {name: float(mib) for name, mib in re.findall(r"resident memory, peak / idle after the load, spotguard-([a-z]+), MiB +([0-9.]+)", text)}


def mebibytes(quantity):
    m = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi)?", str(quantity))
    if not m:
        return None
    return float(m.group(1)) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, None: 1 / 1048576}[m.group(2)]


def check_references(objects, problems):
    secrets = OPERATOR_SECRETS | {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    pod_labels = [d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments.values()]
    measured = bench_memory()
    for o in objects:
        where = f'{o["kind"]} {o["metadata"]["name"]}'
        if o["kind"] in ("Deployment", "Job"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                ports = {p.get("name") for p in c.get("ports", [])}
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref and ref["name"] not in secrets:
                        problems.append(f'{where}: env {e["name"]} names Secret {ref["name"]}, which nothing makes')
                for e in c.get("envFrom", []):
                    ref = e.get("configMapRef")
                    if ref and ref["name"] not in maps:
                        problems.append(f'{where}: envFrom names ConfigMap {ref["name"]}, which nothing makes')
                for probe in ("livenessProbe", "readinessProbe"):
                    port = c.get(probe, {}).get("httpGet", {}).get("port")
                    if o["kind"] == "Deployment" and (port is None or (isinstance(port, str) and port not in ports)):
                        problems.append(f"{where}: {probe} port {port!r} is not a container port")
                service = o["metadata"]["name"].removeprefix("spotguard-")
                request = mebibytes(c.get("resources", {}).get("requests", {}).get("memory", ""))
                if o["kind"] == "Deployment" and service in measured and (request is None or request < measured[service]):
                    problems.append(f"{where}: memory request {request} MiB is below the {measured[service]} MiB `make bench` measured")
        selector = None
        if o["kind"] == "Service":
            selector = o["spec"].get("selector")
        elif o["kind"] == "PodDisruptionBudget":
            selector = o["spec"]["selector"].get("matchLabels")
        if selector is not None and not any(selector.items() <= labels.items() for labels in pod_labels):
            problems.append(f"{where}: selects no Deployment's pods ({selector})")
        if o["kind"] == "HorizontalPodAutoscaler" and o["spec"]["scaleTargetRef"]["name"] not in deployments:
            problems.append(f'{where}: scales {o["spec"]["scaleTargetRef"]["name"]}, which is no Deployment here')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", default="1.32.0")
    parser.add_argument("directory", nargs="?", default=os.path.join(ROOT, "deploy", "kubernetes"))
    args = parser.parse_args()
    directory = args.directory
    problems = []
    kustomization = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
    listed = kustomization.get("resources", [])
    present = sorted(f for f in os.listdir(directory) if f.endswith(".yaml") and f != "kustomization.yaml")
    for f in sorted(set(present) - set(listed)):
        problems.append(f"{f}: not listed in kustomization.yaml")
    objects = []
    for f in listed:
        path = os.path.join(directory, f)
        if not os.path.exists(path):
            problems.append(f"kustomization.yaml lists {f}, which does not exist")
            continue
        objects += [d for d in yaml.safe_load_all(open(path)) if d]
    objects += generated(kustomization, directory)
    custom = {key: load_custom_schema(directory, name) for key, name in CUSTOM_KINDS.items()}
    for o in objects:
        where = f'{o.get("kind")} {o.get("metadata", {}).get("name")}'
        key = (o.get("apiVersion"), o.get("kind"))
        if key in custom:
            for e in jsonschema.Draft7Validator(custom[key]).iter_errors(o):
                problems.append(f'{where}: {"/".join(map(str, e.absolute_path))}: {e.message}')
            continue
        try:
            kubernetes_validate.validate(o, args.kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f'{where}: {"/".join(map(str, e.path))}: {e.message}')
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{where}: no schema for this kind in Kubernetes {args.kubernetes_version} ({e})")
    if not problems:
        check_references(objects, problems)
    for p in problems:
        print(p)
    if problems:
        return 1
    kinds = sorted({o["kind"] for o in objects})
    print(f"kubernetes: {len(objects)} objects valid for Kubernetes {args.kubernetes_version} ({', '.join(kinds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
