#!/usr/bin/python3
"""Exports torchvision's EfficientNetV2-S (random weights: timing only, nothing is downloaded) to ONNX at
1x3x300x300, opset 17, for the ONNX Runtime side of bench/side_by_side.sh.

usage: /usr/bin/python3 bench/ort/export_torchvision_effv2s.py OUT.onnx
Prints one JSON line: the file, input shape, opset and the graph's multiply-adds (convs + linear layers).
"""
import json
import sys

import torch
import torchvision

SIZE = 300
OPSET = 17


def multiply_adds(model, example):
    """Multiply-adds of every Conv2d and Linear layer, counted from the shapes seen in one forward pass."""
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    return total


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_v2_s(weights=None).eval()
    example = torch.rand(1, 3, SIZE, SIZE)
    macs = multiply_adds(model, example)
    with torch.no_grad():
        torch.onnx.export(model, example, out, opset_version=OPSET, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True)
    print(json.dumps({"onnx": out, "input": [1, 3, SIZE, SIZE], "opset": OPSET, "classes": 1000,
                      "multiply_adds": macs}))


if __name__ == "__main__":
    main()
