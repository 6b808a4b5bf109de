"""Checks lwota's OpenAPI document (tests/openapi.rs runs this).

usage: openapi_check.py DOC.json SAMPLES.json

1. DOC.json must be a valid OpenAPI 3.1 document (openapi-spec-validator).
2. SAMPLES.json is {"SchemaName": [response body, ...]}: each body must
   match components.schemas.SchemaName, with additionalProperties false on
   every object schema, so a field a handler sends but the document does
   not describe fails here.
"""
import copy
import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def closed(node):
    """The schema with every object schema closed to unknown fields."""
    if isinstance(node, dict):
        out = {k: closed(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [closed(v) for v in node]
    return node


def main():
    doc = json.load(open(sys.argv[1]))
    validate(doc)
    samples = json.load(open(sys.argv[2]))
    components = closed(copy.deepcopy(doc.get("components", {})))
    failures = []
    for name, bodies in samples.items():
        if name not in components.get("schemas", {}):
            failures.append(f"no schema {name}")
            continue
        schema = {"$ref": f"#/components/schemas/{name}", "components": components}
        validator = Draft202012Validator(schema)
        for body in bodies:
            for error in validator.iter_errors(body):
                failures.append(f"{name}: {error.message} at {list(error.absolute_path)}")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("openapi ok")


if __name__ == "__main__":
    main()
