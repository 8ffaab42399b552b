#!/usr/bin/env python3
"""Generate KCIDB's JSON schema from a kcidb-io schema module.

kcidb-io keeps each schema version as a Python class whose `json` attribute is
the JSON schema, built from patterns inherited from the previous versions
(PreviousVersion.origin_id_pattern and the like). This evaluates the class
body's assignments of one module, e.g. kcidb_io/schema/v05_03.py, with
`PreviousVersion` bound to the attributes recorded in inherited.json (read
from the older modules, each with its commit), and writes Version.json as
kcidb-io's README exports it (indent 2, sorted keys).

No code of kcidb-io is imported or executed beyond those assignments, and the
module file itself is not kept in this repository: get it from a kcidb-io
checkout.

    python3 schemas/kcidb/generate.py PATH/TO/kcidb_io/schema/v05_03.py \
        --inherited schemas/kcidb/inherited.json \
        --out schemas/kcidb/kcidb.v5.3.schema.json
"""

import argparse
import ast
import json
import re
import sys
import types


def fail(message):
    sys.stderr.write(f"generate.py: {message}\n")
    sys.exit(2)


def previous_version(inherited_path, expected_module):
    with open(inherited_path, encoding="utf-8") as f:
        inherited = json.load(f)
    if inherited.get("module") != expected_module:
        fail(f"{inherited_path} describes {inherited.get('module')!r}, but the module "
             f"inherits from {expected_module!r}: record that module's attributes first")
    attrs = {}
    for name, entry in inherited["attributes"].items():
        value = entry["value"]
        # kcidb-io keeps some patterns as compiled regular expressions (*_re)
        attrs[name] = re.compile(value) if name.endswith("_re") else value
    return types.SimpleNamespace(**attrs)


def class_body(tree, module_path):
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Version":
            return node.body
    fail(f"{module_path}: no class Version")
    return []


def parent_module(tree, module_path):
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.asname == "PreviousVersion" for a in node.names):
            return node.module.rsplit(".", 1)[-1]
    fail(f"{module_path}: no 'import Version as PreviousVersion'")
    return ""


def main():
    parser = argparse.ArgumentParser(description="Generate KCIDB's JSON schema from a kcidb-io schema module.")
    parser.add_argument("module", help="path to kcidb_io/schema/vMM_NN.py")
    parser.add_argument("--inherited", required=True, help="JSON with the PreviousVersion attributes the module uses")
    parser.add_argument("--out", required=True, help="where to write the JSON schema")
    args = parser.parse_args()

    with open(args.module, encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source, args.module)
    namespace = {}
    scope = {"re": re, "PreviousVersion": previous_version(args.inherited, parent_module(tree, args.module))}
    for node in class_body(tree, args.module):
        # Only the class attributes: the schema, the version numbers and the
        # patterns it is built from. Methods and docstrings are skipped.
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            try:
                exec(compile(ast.Module(body=[node], type_ignores=[]), args.module, "exec"), scope, namespace)
            except AttributeError as e:
                fail(f"{args.module}:{node.lineno}: {e}: add it to {args.inherited}")
    if "json" not in namespace:
        fail(f"{args.module}: class Version has no json attribute")
    schema = namespace["json"]
    major, minor = namespace.get("major"), namespace.get("minor")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(schema, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {args.out}: KCIDB schema v{major}.{minor}")


main()
