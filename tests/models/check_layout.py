#!/usr/bin/python3
"""Compares the structure of a generated Keras file with genuine Keras files of the same container kind.

Usage: /usr/bin/python3 check_layout.py GENERATED REFERENCE [REFERENCE ...]

GENERATED and the references are either Keras 3 `.keras` zips or legacy full-model `.h5` files. Checked:
zip member order/compression/attributes, metadata.json keys, the key lists of every serialized object in
config.json per class (and of inbound nodes, tensors, dtype policies), HDF5 attribute names and string
types, the group/dataset naming scheme, and that the weight groups follow from the config the way Keras
names them (snake_case(class) + per-container counter, `name` attribute = layer name, `:0` weight names).
Classes no reference contains are reported as "uncovered", not as mismatches. Exits 1 on any mismatch.
"""

import io
import json
import re
import sys
import zipfile

import h5py
import numpy as np


class Report:
    def __init__(self):
        self.mismatches = []

    def check(self, ok, message):
        if not ok:
            self.mismatches.append(message)
            print(f"  MISMATCH {message}")

    def note(self, message):
        print(f"  note: {message}")


def to_snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# ---------------------------------------------------------------------------------------------------
# config.json / model_config: key lists per serialized class.

def object_signatures(tree):
    """{class_name: {(object keys, config keys)}} over every dict that names a class."""
    found = {}

    def visit(node):
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                keys = tuple(k for k in node if k != "shared_object_id")
                config = node.get("config")
                config_keys = tuple(k for k in config if k != "shared_object_id") if isinstance(config, dict) else None
                found.setdefault(node["class_name"], set()).add((keys, config_keys))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(tree)
    return found


def node_signatures(tree):
    """{layer class: {inbound node shape}}: Keras 3 {"args","kwargs"} key lists, Keras 2 [name, i, j, kwargs]."""
    found = {}

    def visit(layers):
        for layer in layers:
            for node in layer.get("inbound_nodes", []):
                if isinstance(node, dict):
                    shape = ("keras3", tuple(node), tuple(sorted(node.get("kwargs", {}))))
                else:
                    shape = ("keras2", tuple(len(ref) for ref in node),
                             tuple(sorted({k for ref in node for k in ref[3]})))
                found.setdefault(layer["class_name"], set()).add(shape)
            if layer["class_name"] in ("Functional", "Sequential", "Model"):
                visit(layer["config"]["layers"])

    visit(tree["config"]["layers"])
    return found


def compare_configs(report, generated, references):
    gen_objects = object_signatures(generated)
    ref_objects = {}
    for ref in references:
        for cls, sigs in object_signatures(ref).items():
            ref_objects.setdefault(cls, set()).update(sigs)
    uncovered = sorted(cls for cls in gen_objects if cls not in ref_objects)
    for cls in sorted(set(gen_objects) & set(ref_objects)):
        for sig in gen_objects[cls] - ref_objects[cls]:
            report.check(False, f"{cls} object keys {sig} not seen in any reference (reference: {sorted(ref_objects[cls])})")
    if uncovered:
        report.note(f"classes without a reference example (keys unchecked): {uncovered}")

    gen_nodes = node_signatures(generated)
    ref_nodes = {}
    for ref in references:
        for cls, sigs in node_signatures(ref).items():
            ref_nodes.setdefault(cls, set()).update(sigs)
    for cls in sorted(set(gen_nodes) & set(ref_nodes)):
        for sig in gen_nodes[cls] - ref_nodes[cls]:
            report.check(False, f"{cls} inbound node {sig} differs from the references {sorted(ref_nodes[cls])}")
    print(f"  config: {len(gen_objects)} classes compared ({len(set(gen_objects) & set(ref_objects))} covered), "
          f"inbound nodes of {len(set(gen_nodes) & set(ref_nodes))} classes compared")


def check_dtype_sharing(report, config_text):
    """Keras writes shared_object_id on every serialization of the shared policy object but the first."""
    policies = [m.group(0) for m in re.finditer(r'\{"module": "keras", "class_name": "DTypePolicy".*?\}[^{]*?\}', config_text)]
    if policies:
        ids = ['"shared_object_id"' in p for p in policies]
        report.check(not ids[0] or len(set(ids)) == 1, "first DTypePolicy carries a shared_object_id")


# ---------------------------------------------------------------------------------------------------
# HDF5 helpers.

def attr_kind(obj, name):
    """A comparable description of an attribute's HDF5 type: class, variable/fixed string, charset, shape."""
    aid = obj.attrs.get_id(name)
    tid = aid.get_type()
    if isinstance(tid, h5py.h5t.TypeStringID):
        variable = tid.is_variable_str()
        return ("string", "variable" if variable else "fixed", tid.get_cset(), len(aid.shape))
    return (type(tid).__name__, aid.dtype.str, len(aid.shape))


def dataset_kind(ds):
    plist = ds.id.get_create_plist()
    return (ds.dtype.str, plist.get_layout(), plist.get_nfilters())


def snake_group_names(layers, skip_input):
    """Group names saving_lib gives a container of layers: snake_case(class) + per-container counter."""
    used, names = {}, []
    for layer in layers:
        if skip_input and layer["class_name"] == "InputLayer":
            continue
        name = to_snake_case(layer["class_name"])
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        names.append((name, layer))
    return names


# ---------------------------------------------------------------------------------------------------
# Keras 3 .keras archives.

def load_keras3(path):
    zf = zipfile.ZipFile(path)
    config_text = zf.read("config.json").decode()
    return {"zip": zf, "infos": zf.infolist(), "metadata": json.loads(zf.read("metadata.json")),
            "config": json.loads(config_text), "config_text": config_text,
            "h5": h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r")}


def check_keras3_consistency(report, label, archive):
    """The weight groups follow from config.json exactly as saving_lib names them."""
    h5 = archive["h5"]
    count = 0

    def walk(model, path):
        nonlocal count
        is_sequential = model["class_name"] == "Sequential"
        for group_name, layer in snake_group_names(model["config"]["layers"], skip_input=is_sequential):
            group_path = f"{path}layers/{group_name}"
            name = layer["config"]["name"]
            if group_path + "/vars" not in h5:
                report.check(False, f"{label}: layer {name} has no group {group_path}/vars")
                continue
            vars_group = h5[group_path + "/vars"]
            if "name" in vars_group.attrs:
                report.check(vars_group.attrs["name"] == name,
                             f"{label}: {group_path}/vars name attribute {vars_group.attrs['name']!r} != {name!r}")
            keys = sorted(vars_group.keys(), key=int)
            report.check(keys == [str(i) for i in range(len(keys))], f"{label}: {group_path}/vars datasets {keys}")
            count += 1
            if layer["class_name"] in ("Functional", "Sequential"):
                walk(layer, group_path + "/")

    walk(archive["config"], "")
    return count


def compare_keras3(report, generated, references):
    gen = load_keras3(generated)
    refs = [load_keras3(path) for path in references]

    gen_members = [(i.filename, i.compress_type, i.flag_bits, i.external_attr) for i in gen["infos"]]
    for ref_path, ref in zip(references, refs):
        ref_members = [(i.filename, i.compress_type, i.flag_bits, i.external_attr) for i in ref["infos"]]
        report.check(gen_members == ref_members, f"zip members {gen_members} != {ref_members} ({ref_path})")
        report.check(list(gen["metadata"]) == list(ref["metadata"]),
                     f"metadata.json keys {list(gen['metadata'])} != {list(ref['metadata'])} ({ref_path})")
    report.check(re.fullmatch(r"\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d", gen["metadata"]["date_saved"]) is not None,
                 "date_saved format")
    print(f"  zip: members {[m[0] for m in gen_members]}, compression {sorted({m[1] for m in gen_members})}")

    compare_configs(report, gen["config"], [ref["config"] for ref in refs])
    check_dtype_sharing(report, gen["config_text"])

    # HDF5: root attributes, top-level groups, vars groups and their datasets.
    h5 = gen["h5"]
    report.check(len(h5.attrs) == 0 and all(len(ref["h5"].attrs) == 0 for ref in refs), "root attributes")
    for ref_path, ref in zip(references, refs):
        extra = set(h5.keys()) - set(ref["h5"].keys())
        report.check(not extra, f"top-level groups {sorted(extra)} absent from {ref_path}")

    def vars_groups(f):
        found = []
        f.visititems(lambda name, obj: found.append((name, obj)) if name.split("/")[-1] == "vars" else None)
        return found

    ref_attr_kinds = {attr_kind(g, "name") for ref in refs for _, g in vars_groups(ref["h5"]) if "name" in g.attrs}
    ref_dataset_kinds = {dataset_kind(ds) for ref in refs for _, g in vars_groups(ref["h5"])
                         for ds in g.values() if ds.dtype == np.float32}
    for name, group in vars_groups(h5):
        report.check(list(group.attrs) == ["name"] or not ref_attr_kinds, f"{name} attributes {list(group.attrs)}")
        if "name" in group.attrs:
            report.check(attr_kind(group, "name") in ref_attr_kinds,
                         f"{name} name attribute type {attr_kind(group, 'name')} not in {ref_attr_kinds}")
        for ds in group.values():
            report.check(dataset_kind(ds) in ref_dataset_kinds,
                         f"{ds.name} storage {dataset_kind(ds)} not in {ref_dataset_kinds}")
        parts = name.split("/")
        report.check(all(re.fullmatch(r"[a-z0-9_]+", p) for p in parts), f"group path {name}")

    for ref_path, ref in zip(references, refs):
        check_keras3_consistency(report, ref_path, ref)  # the rule must hold on genuine files too
    count = check_keras3_consistency(report, generated, gen)
    print(f"  weights: {count} layer groups follow the config (snake_case + counter, name attributes)")


# ---------------------------------------------------------------------------------------------------
# Legacy .h5 full-model files.

def check_legacy_consistency(report, label, f):
    config = json.loads(f.attrs["model_config"])
    weights = f["model_weights"]
    layer_names = [n.decode() if isinstance(n, bytes) else n for n in read_chunked(weights, "layer_names")]
    config_names = [layer["config"]["name"] for layer in config["config"]["layers"]]
    report.check(layer_names == config_names, f"{label}: layer_names differ from the model_config layer order")
    inner = {}
    for layer in config["config"]["layers"]:
        if layer["class_name"] in ("Functional", "Model", "Sequential"):
            inner[layer["config"]["name"]] = {l["config"]["name"] for l in layer["config"]["layers"]}
    for name in layer_names:
        group = weights[name]
        names = [n.decode() if isinstance(n, bytes) else n for n in read_chunked(group, "weight_names")]
        for weight in names:
            report.check(weight in group, f"{label}: dataset {name}/{weight} missing")
            owner = weight.split("/")[-2] if "/" in weight else None
            expected = inner.get(name, {name})
            report.check(owner in expected, f"{label}: weight {weight} of {name} not owned by a layer of it")
    return len(layer_names)


def read_chunked(obj, name):
    if name in obj.attrs:
        return list(obj.attrs[name])
    values, index = [], 0
    while f"{name}{index}" in obj.attrs:
        values += list(obj.attrs[f"{name}{index}"])
        index += 1
    return values


def compare_legacy(report, generated, references):
    gen = h5py.File(generated, "r")
    refs = [h5py.File(path, "r") for path in references]
    gen_version = gen.attrs["keras_version"]
    same_version = [ref for ref in refs if ref.attrs["keras_version"][:4] == gen_version[:4]]
    print(f"  generated keras_version {gen_version}; same-version references for attribute types: "
          f"{[ref.filename for ref in same_version]}")

    for path, ref in zip(references, refs):
        missing = set(ref.attrs) - set(gen.attrs) - {"training_config"}  # present only for compiled models
        extra = set(gen.attrs) - set(ref.attrs)
        report.check(not missing and not extra, f"root attributes: missing {missing}, extra {extra} ({path})")
        report.check(set(gen.keys()) <= set(ref.keys()), f"root groups {sorted(gen.keys())} vs {sorted(ref.keys())}")
        report.check(list(gen["model_weights"].attrs) == list(ref["model_weights"].attrs),
                     f"model_weights attributes {list(gen['model_weights'].attrs)} != "
                     f"{list(ref['model_weights'].attrs)} ({path})")
    for ref in same_version:
        for name in gen.attrs:
            if name in ref.attrs:
                report.check(attr_kind(gen, name) == attr_kind(ref, name),
                             f"root attribute {name} type {attr_kind(gen, name)} != {attr_kind(ref, name)}")
        for name in gen["model_weights"].attrs:
            report.check(attr_kind(gen["model_weights"], name) == attr_kind(ref["model_weights"], name),
                         f"model_weights attribute {name} type differs")

    # Per-layer groups: only weight_names; empty lists and name lists typed as the references type them.
    def weight_name_kinds(f, empty):
        return {attr_kind(g, "weight_names") for g in f["model_weights"].values()
                if "weight_names" in g.attrs and (len(g.attrs["weight_names"]) == 0) == empty}

    for empty in (True, False):
        ref_kinds = set().union(*(weight_name_kinds(ref, empty) for ref in same_version)) if same_version else set()
        for kind in weight_name_kinds(gen, empty):
            report.check(not ref_kinds or kind in ref_kinds,
                         f"{'empty' if empty else 'non-empty'} weight_names type {kind} not in {ref_kinds}")
    for name, group in gen["model_weights"].items():
        report.check(list(group.attrs) == ["weight_names"], f"model_weights/{name} attributes {list(group.attrs)}")
        for weight in read_chunked(group, "weight_names"):
            weight = weight.decode() if isinstance(weight, bytes) else weight
            report.check(re.fullmatch(r"[^/]+/[^/]+:0", weight) is not None, f"weight name {weight} not <layer>/<var>:0")
    ref_storage = {dataset_kind(obj) for ref in refs for obj in _datasets(ref["model_weights"]) if obj.dtype == np.float32}
    for ds in _datasets(gen["model_weights"]):
        report.check(dataset_kind(ds) in ref_storage, f"{ds.name} storage {dataset_kind(ds)} not in {ref_storage}")

    compare_configs(report, json.loads(gen.attrs["model_config"]),
                    [json.loads(ref.attrs["model_config"]) for ref in refs])
    for path, ref in zip(references, refs):
        check_legacy_consistency(report, path, ref)
    count = check_legacy_consistency(report, generated, gen)
    print(f"  weights: {count} layer groups consistent with model_config and weight_names")


def _datasets(group):
    found = []
    group.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    generated, references = argv[1], argv[2:]
    report = Report()
    print(f"{generated} vs {', '.join(references)}")
    kinds = {path: zipfile.is_zipfile(path) for path in [generated, *references]}
    if len(set(kinds.values())) != 1:
        print("  MISMATCH files are not all of one container kind")
        return 1
    if kinds[generated]:
        compare_keras3(report, generated, references)
    else:
        compare_legacy(report, generated, references)
    print("  RESULT: " + ("OK" if not report.mismatches else f"{len(report.mismatches)} mismatch(es)"))
    return 1 if report.mismatches else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
