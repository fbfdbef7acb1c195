#!/usr/bin/env python3
"""Cuts the operations the client and the sandbox use out of the official Aiven OpenAPI
description, with every component they reach through $ref, transitively.

    tests/data/trim-openapi.py path/to/openapi.json > tests/data/aiven-openapi.trimmed.json

The output is deterministic (key order of the source, fixed indentation), so re-running
it on the same source gives the same bytes. When the sandbox serves a new route, add it
to OPERATIONS and re-run: the test `every_sandbox_route_is_in_the_trimmed_description`
fails until then. See tests/data/README.md for the source and licence.
"""

import json
import sys

# (method, path template as in the spec). Everything the sandbox serves under /v1 that
# the description knows; the client's requests are a subset.
OPERATIONS = [
    ("get", "/clouds"),
    ("get", "/service_types"),
    ("get", "/service_versions"),
    ("get", "/me"),
    ("get", "/project"),
    ("get", "/project/{project}"),
    ("get", "/project/{project}/clouds"),
    ("get", "/project/{project}/vpcs"),
    ("get", "/project/{project}/kms/ca"),
    ("get", "/project/{project}/service_types"),
    ("get", "/project/{project}/service-types"),
    ("get", "/project/{project}/service-types/{service_type}"),
    ("get", "/project/{project}/service-types/{service_type}/plans"),
    ("get", "/project/{project}/service-types/{service_type}/plans/{service_plan}"),
    ("get", "/project/{project}/pricing/service-types/{service_type}/plans/{service_plan}/clouds/{cloud}"),
    ("get", "/project/{project}/service"),
    ("post", "/project/{project}/service"),
    ("get", "/project/{project}/service/{service_name}"),
    ("put", "/project/{project}/service/{service_name}"),
    ("delete", "/project/{project}/service/{service_name}"),
    ("get", "/project/{project}/service/{service_name}/tags"),
    ("put", "/project/{project}/service/{service_name}/tags"),
    ("patch", "/project/{project}/service/{service_name}/tags"),
    ("get", "/project/{project}/service/{service_name}/db"),
    ("post", "/project/{project}/service/{service_name}/db"),
    ("delete", "/project/{project}/service/{service_name}/db/{dbname}"),
    ("post", "/project/{project}/service/{service_name}/user"),
    ("get", "/project/{project}/service/{service_name}/user/{service_username}"),
    ("put", "/project/{project}/service/{service_name}/user/{service_username}"),
    ("delete", "/project/{project}/service/{service_name}/user/{service_username}"),
    ("put", "/project/{project}/service/{service_name}/user/{service_username}/credentials/reset"),
    ("get", "/project/{project}/service/{service_name}/topic"),
    ("post", "/project/{project}/service/{service_name}/topic"),
    ("get", "/project/{project}/service/{service_name}/topic/{topic_name}"),
    ("delete", "/project/{project}/service/{service_name}/topic/{topic_name}"),
    ("get", "/project/{project}/service/{service_name}/acl"),
    ("post", "/project/{project}/service/{service_name}/acl"),
    ("delete", "/project/{project}/service/{service_name}/acl/{kafka_acl_id}"),
    ("get", "/project/{project}/service/{service_name}/kafka/acl"),
    ("post", "/project/{project}/service/{service_name}/kafka/acl"),
    ("get", "/project/{project}/service/{service_name}/kafka/acl/{kafka_acl_id}"),
    ("delete", "/project/{project}/service/{service_name}/kafka/acl/{kafka_acl_id}"),
]


def refs(node):
    """Every $ref string inside a JSON value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def pointer(doc, ref):
    if not ref.startswith("#/"):
        sys.exit(f"external $ref not supported: {ref}")
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def trim(doc):
    paths = {}
    for method, template in OPERATIONS:
        try:
            op = doc["paths"][template][method]
        except KeyError:
            sys.exit(f"{method.upper()} {template} is not in the description")
        paths.setdefault(template, {})[method] = op
    # Keep the source's order of paths and methods.
    ordered = {
        t: {m: paths[t][m] for m in doc["paths"][t] if m in paths[t]}
        for t in doc["paths"]
        if t in paths
    }

    reached, queue = set(), list(refs(ordered))
    while queue:
        ref = queue.pop()
        if ref not in reached:
            reached.add(ref)
            queue.extend(refs(pointer(doc, ref)))
    schemes = {
        name
        for methods in ordered.values()
        for op in methods.values()
        for requirement in op.get("security", [])
        for name in requirement
    }
    components = {}
    for kind, items in doc["components"].items():
        kept = {
            name: value
            for name, value in items.items()
            if f"#/components/{kind}/{name}" in reached
            or (kind == "securitySchemes" and name in schemes)
        }
        if kept:
            components[kind] = kept
    used_tags = {tag for methods in ordered.values() for op in methods.values() for tag in op.get("tags", [])}
    info = {k: v for k, v in doc["info"].items() if k != "description"}
    info["description"] = (
        "Trimmed copy of the official Aiven API description: only the operations "
        "aiven-ephemeral and its sandbox use, with every component they reference. "
        "See tests/data/README.md."
    )
    return {
        "openapi": doc["openapi"],
        "info": info,
        "servers": doc["servers"],
        "tags": [t for t in doc.get("tags", []) if t["name"] in used_tags],
        "paths": ordered,
        "components": components,
    }


def render(value, depth=0):
    """JSON with one line per path and per component: diffs stay readable, the file
    stays small (the schemas repeat large inline objects)."""
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if depth == 3 or not isinstance(value, dict) or not value:
        return compact
    pad = " " * (depth + 1)
    items = [f"{pad}{json.dumps(k)}:{render(v, depth + 1)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}" + ("\n" if depth == 0 else "")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    sys.stdout.write(render(trim(doc)))


if __name__ == "__main__":
    main()
