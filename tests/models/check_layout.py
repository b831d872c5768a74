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

# Keys that depend on how the model was used rather than on the format: compile_config exists only for
# compiled models; name/inbound_nodes are added to every layer entry of a Functional (checked separately).
CONTEXT_KEYS = {"compile_config", "name", "inbound_nodes"}

# Documented differences between Keras versions, ignored only when a reference is on the other side:
# (class, "object"|"config", key, first version that has the key, last version that has it).
VERSION_DEPENDENT_KEYS = [
    # keras/src/layers/regularization/dropout.py sets built=True in __init__ from v3.6.0: no build_config.
    ("Dropout", "object", "build_config", (3, 0), (3, 5)),
    # keras/engine/functional.py get_config writes "trainable" from v2.12.0.
    ("Functional", "config", "trainable", (2, 12), (2, 99)),
]


def parse_version(text):
    return tuple(int(part) for part in text.split(".")[:2])


def object_signatures(tree, strip=()):
    """{class_name: {(object keys, config keys)}} over every dict that names a class; `strip` lists
    (class, "object"|"config", key) entries to leave out."""
    found = {}

    def keys_of(cls, where, mapping):
        return tuple(k for k in mapping if k != "shared_object_id" and (cls, where, k) not in strip
                     and not (where == "object" and k in CONTEXT_KEYS))

    def visit(node):
        if isinstance(node, dict):
            cls = node.get("class_name")
            if isinstance(cls, str):
                config = node.get("config")
                config_keys = keys_of(cls, "config", config) if isinstance(config, dict) else None
                found.setdefault(cls, set()).add((keys_of(cls, "object", node), config_keys))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(tree)
    return found


def version_strip(gen_version, ref_version):
    """The version-dependent keys to ignore when comparing these two versions."""
    strip = set()
    for cls, where, key, first, last in VERSION_DEPENDENT_KEYS:
        if (first <= gen_version <= last) != (first <= ref_version <= last):
            strip.add((cls, where, key))
    return strip


def check_layer_entries(report, tree):
    """Every layer entry of a Functional config ends with the name and inbound_nodes Functional adds."""
    def visit(model):
        for layer in model["config"]["layers"]:
            if model["class_name"] in ("Functional", "Model"):
                report.check(list(layer)[-2:] == ["name", "inbound_nodes"],
                             f"layer entry {layer['config'].get('name')} keys {list(layer)}")
            if layer["class_name"] in ("Functional", "Sequential", "Model"):
                visit(layer)
    visit(tree)


def node_signatures(tree):
    """{layer class: {inbound node shape}}: Keras 3 {"args","kwargs"} key lists, Keras 2 [name, i, j, kwargs].
    A nested model's `training` argument is the caller's choice (base(x, training=False)), so it is left out."""
    found = {}

    def kwarg_keys(cls, kwargs):
        return tuple(sorted(k for k in kwargs if not (k == "training" and cls in ("Functional", "Sequential"))))

    def visit(layers):
        for layer in layers:
            cls = layer["class_name"]
            for node in layer.get("inbound_nodes", []):
                if isinstance(node, dict):
                    shape = ("keras3", tuple(node), kwarg_keys(cls, node.get("kwargs", {})))
                else:
                    shape = ("keras2", tuple(len(ref) for ref in node),
                             kwarg_keys(cls, {k for ref in node for k in ref[3]}))
                found.setdefault(layer["class_name"], set()).add(shape)
            if layer["class_name"] in ("Functional", "Sequential", "Model"):
                visit(layer["config"]["layers"])

    visit(tree["config"]["layers"])
    return found


def strip_signature(cls, sig, strip):
    keys, config_keys = sig
    keys = tuple(k for k in keys if (cls, "object", k) not in strip)
    if config_keys is not None:
        config_keys = tuple(k for k in config_keys if (cls, "config", k) not in strip)
    return keys, config_keys


def compare_configs(report, generated, references, gen_version, ref_versions):
    gen_objects = object_signatures(generated)
    per_ref = [object_signatures(ref) for ref in references]
    ref_objects = {}
    for sigs_by_class in per_ref:
        for cls, sigs in sigs_by_class.items():
            ref_objects.setdefault(cls, set()).update(sigs)
    for cls in sorted(set(gen_objects) & set(ref_objects)):
        for sig in gen_objects[cls] - ref_objects[cls]:
            # Accepted when a reference of another version differs only by a documented key.
            explained = False
            for sigs_by_class, version in zip(per_ref, ref_versions):
                strip = version_strip(gen_version, version)
                ref_sigs = {strip_signature(cls, r, strip) for r in sigs_by_class.get(cls, ())}
                explained |= bool(strip) and strip_signature(cls, sig, strip) in ref_sigs
            if explained:
                report.note(f"{cls} keys {sig} differ from a reference of another Keras version only by a "
                            f"documented version change")
            else:
                report.check(False, f"{cls} object keys {sig} not seen in any reference "
                                    f"(reference: {sorted(ref_objects[cls])})")
    uncovered = sorted(cls for cls in gen_objects if cls not in ref_objects)
    if uncovered:
        report.note(f"classes without a reference example (keys unchecked): {uncovered}")
    check_layer_entries(report, generated)

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


def check_dtype_sharing(report, config):
    """Keras writes shared_object_id on every serialization of a shared policy object but the first, so
    per policy at most one copy lacks the id and all copies with an id carry the same one."""
    policies = []

    def visit(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                policies.append(node)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    for name in {p["config"]["name"] for p in policies}:
        same = [p for p in policies if p["config"]["name"] == name]
        ids = {p["shared_object_id"] for p in same if "shared_object_id" in p}
        without = sum("shared_object_id" not in p for p in same)
        report.check(len(ids) <= 1 and (without <= 1 or not ids),
                     f"DTypePolicy {name}: {without} copies without shared_object_id, ids {sorted(ids)}")


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
    return {"zip": zf, "infos": zf.infolist(), "metadata": json.loads(zf.read("metadata.json")),
            "config": json.loads(zf.read("config.json")),
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

    compare_configs(report, gen["config"], [ref["config"] for ref in refs],
                    parse_version(gen["metadata"]["keras_version"]),
                    [parse_version(ref["metadata"]["keras_version"]) for ref in refs])
    for path, archive in [(generated, gen), *zip(references, refs)]:
        check_dtype_sharing(report, archive["config"])

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
    # A Sequential's config lists its InputLayer, its layer_names (model.layers) do not.
    config_names = [layer["config"]["name"] for layer in config["config"]["layers"]
                    if not (config["class_name"] == "Sequential" and layer["class_name"] == "InputLayer")]
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
            report.check(re.fullmatch(r"[^/]+/[^/]+:0", weight) is not None,
                         f"weight name {weight} not <layer>/<var>:0")
    ref_storage = {dataset_kind(obj) for ref in refs for obj in _datasets(ref["model_weights"])
                   if obj.dtype == np.float32}
    for ds in _datasets(gen["model_weights"]):
        report.check(dataset_kind(ds) in ref_storage, f"{ds.name} storage {dataset_kind(ds)} not in {ref_storage}")

    compare_configs(report, json.loads(gen.attrs["model_config"]),
                    [json.loads(ref.attrs["model_config"]) for ref in refs],
                    parse_version(gen_version), [parse_version(ref.attrs["keras_version"]) for ref in refs])
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
