#!/usr/bin/env python3
"""The bus contract (docs/asyncapi.yaml) checked two ways.

  check-bus-contract.py document
      The document is valid AsyncAPI 3.0.0 (the specification's own JSON Schema, vendored in
      deploy/contract/), every schema in it is valid JSON Schema, every routing key the Swift
      code names has a channel, and the `integrator` broker user's permissions
      (deploy/rabbitmq-integrator.sh) are exactly the public channels.

  check-bus-contract.py messages DIR
      Every message recorded in DIR (*.jsonl written by SpotBus's tap, SPOTGUARD_BUS_TAP_DIR:
      what each process published or consumed and handled) is valid against the schema of its
      routing key's channel. A Swift payload type that changes without the document fails here.

Needs jsonschema and PyYAML (deploy/stack.sh contract-python).
"""
import glob
import gzip
import json
import os
import re
import sys
from collections import Counter

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "asyncapi.yaml")
SPEC = os.path.join(ROOT, "deploy", "contract", "asyncapi-3.0.0.schema.json.gz")
BASE = "urn:spotguard:asyncapi"


def load_doc():
    with open(DOC) as f:
        return yaml.safe_load(f)


def fail(lines):
    for line in lines[:20]:
        print("  " + line)
    if len(lines) > 20:
        print(f"  … and {len(lines) - 20} more")
    sys.exit(1)


def tags(node):
    return {t["name"] for t in node.get("tags", [])}


def public_keys(doc):
    """(input keys, output keys) of the public channels: what SpotGuard receives and sends."""
    inputs, outputs = set(), set()
    for op in doc["operations"].values():
        if "public" not in tags(op):
            continue
        channel = doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]
        (inputs if op["action"] == "receive" else outputs).add(channel["address"])
    return inputs, outputs


def check_document():
    doc = load_doc()
    problems = []
    spec = json.load(gzip.open(SPEC))
    for e in jsonschema.Draft7Validator(spec).iter_errors(doc):
        problems.append(f"AsyncAPI 3.0.0: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}")
    for name, schema in doc["components"]["schemas"].items():
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            problems.append(f"components/schemas/{name}: {e.message[:200]}")
    # every $ref resolves
    registry = Registry().with_resource(BASE, Resource.from_contents(doc, default_specification=DRAFT7))
    resolver = registry.resolver(base_uri=BASE)

    def refs(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str):
                    try:
                        resolver.lookup(v)
                    except Exception:
                        problems.append(f"{path}: $ref {v} does not resolve")
                else:
                    refs(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                refs(v, f"{path}/{i}")

    refs(doc, "")
    # every routing key of the code has a channel
    addresses = {c["address"] for c in doc["channels"].values()}
    with open(os.path.join(ROOT, "Shared", "SpotModels", "Envelope.swift")) as f:
        code_keys = set(re.findall(r'public static let \w+ = "([a-z_]+\.[a-z_.]+)"', f.read()))
    for key in sorted(code_keys - addresses):
        problems.append(f"routing key {key} (Shared/SpotModels/Envelope.swift) has no channel in docs/asyncapi.yaml")
    # the integrator user may use exactly the public channels
    with open(os.path.join(ROOT, "deploy", "rabbitmq-integrator.sh")) as f:
        script = f.read()

    def allowed(var):
        m = re.search(var + r"='\^\(([^)]*)\)\$'", script)
        return {k.replace("\\.", ".") for k in m.group(1).split("|")} if m else set()

    inputs, outputs = public_keys(doc)
    if allowed("PUBLIC_IN") != inputs:
        problems.append(f"integrator may publish {sorted(allowed('PUBLIC_IN'))}, the public inputs are {sorted(inputs)}")
    if allowed("PUBLIC_OUT") != outputs:
        problems.append(f"integrator may bind {sorted(allowed('PUBLIC_OUT'))}, the public outputs are {sorted(outputs)}")
    if problems:
        print("docs/asyncapi.yaml:")
        fail(problems)
    print(f"docs/asyncapi.yaml: valid AsyncAPI 3.0.0; {len(doc['channels'])} channels, "
          f"{len(inputs)} public inputs, {len(outputs)} public outputs; integrator permissions match")


def channel_validators(doc):
    """(address regex, [(message name, validator)]) per channel."""
    registry = Registry().with_resource(BASE, Resource.from_contents(doc, default_specification=DRAFT7))
    out = []
    for cname, channel in doc["channels"].items():
        pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^.]+", re.escape(channel["address"])) + "$"
        validators = []
        for mname, ref in channel["messages"].items():
            path = ref["$ref"]
            schema = {"$ref": BASE + path + "/payload"}
            validators.append((mname, jsonschema.Draft7Validator(
                schema, registry=registry, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)))
        out.append((re.compile(pattern), validators))
    return out


def check_messages(directory):
    doc = load_doc()
    channels = channel_validators(doc)
    counts, problems, files = Counter(), [], sorted(glob.glob(os.path.join(directory, "*.jsonl")))
    for path in files:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                where = f"{os.path.basename(path)}:{n}"
                try:
                    line = json.loads(raw)
                except ValueError:
                    problems.append(f"{where}: not JSON: {raw[:120]!r}")
                    continue
                key, body = line["routing_key"], line["body"]
                counts[(key, line["direction"])] += 1
                matching = [v for rx, v in channels if rx.match(key)]
                if not matching:
                    problems.append(f"{where}: routing key {key} has no channel")
                    continue
                errors = []
                for name, validator in matching[0]:
                    found = sorted(validator.iter_errors(body), key=lambda e: len(list(e.absolute_path)))
                    if not found:
                        errors = None
                        break
                    errors.append(f"{name}: {'/'.join(map(str, found[-1].absolute_path)) or '$'}: {found[-1].message[:160]}")
                if errors:
                    problems.append(f"{where} ({line['direction']} {key}): " + "; ".join(errors))
    total = sum(counts.values())
    print(f"bus contract: {total} messages from {len(files)} processes checked against docs/asyncapi.yaml")
    for (key, direction), n in sorted(counts.items()):
        print(f"  {key:28} {direction:9} {n}")
    if problems:
        print(f"{len(problems)} messages do not match the document:")
        fail(problems)
    if total == 0:
        print("  nothing was recorded: is SPOTGUARD_TEST_BUS_TAP_DIR set?")
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "document":
        check_document()
    elif len(sys.argv) == 3 and sys.argv[1] == "messages":
        check_messages(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
