"""python -m effcam predict|explain|convert|layers: effcam-predict and effcam-convert for people who live in Python.

  python -m effcam predict --model M.effcam IMAGE... [--top-k K] [--json] [--threads N] [DECODING]
  python -m effcam explain --model M.effcam IMAGE... [--method gradcam] [--layer L] [--score logit|prob]
                           [--class-index I] [--overlay OUT.png] [--heatmap OUT.png] [--size model|original]
                           [--alpha A] [--top-k K] [--json] [--threads N] [DECODING]
      {name} in OUT: the image's file stem
      DECODING, as effcam-predict's: [--exif-orientation ignore|apply] [--decode exact|fast] [--save-input OUT.png]
                                     [--max-image-mib MIB]
  python -m effcam convert INPUT.keras|.h5 OUTPUT.effcam [--dtype fp16|fp32] [--labels FILE] [--input-size H,W]
  python -m effcam layers --model M.effcam

--json prints what effcam-predict --json prints, one line per image ({"error", "image"} for an image that failed).
A failed image is reported on stderr and the others go on; the exit status is 1 when any failed, 2 on bad usage.
"""
import argparse
import os
import sys

import effcam


def _output_path(pattern, image, count):
    """As effcam-predict names outputs: {name} is the image's stem; several images without {name} get it added."""
    stem = os.path.splitext(os.path.basename(image))[0]
    if "{name}" in pattern:
        return pattern.replace("{name}", stem)
    if count == 1:
        return pattern
    root, extension = os.path.splitext(pattern)
    return f"{root}_{stem}{extension}"


def _write_picture(png, path):
    if path.lower().endswith(".png"):
        with open(path, "wb") as f:
            f.write(png)
    else:  # another format PIL knows by the extension
        effcam._model._pil_image(png).save(path)


def _print_top(image, top_k):
    print(image)
    for rank, (label, _, probability) in enumerate(top_k, 1):
        print(f"  {rank:2d}. {label:<28} {probability:.4f}")


def _save_input(args, image, prediction):
    """Writes the model's input picture where --save-input says; -> the path."""
    path = _output_path(args.save_input, image, len(args.images))
    with open(path, "wb") as f:
        f.write(prediction.input_png())
    return path


def _classify(args, explain):
    if args.save_input and not args.save_input.lower().endswith(".png"):
        raise effcam.ValueError(f"--save-input writes PNG (lossless): '{args.save_input}' is not a .png")
    model = effcam.Model(args.model, threads=args.threads, max_image_mib=args.max_image_mib)
    decoding = {"exif_orientation": args.exif_orientation, "decode": args.decode,
                "input_image": bool(args.save_input)}
    failed = False
    for image in args.images:
        try:
            if explain:
                size = args.size
                e = model.explain(image, args.method, args.layer, args.score, args.class_index, top_k=args.top_k,
                                  overlay=bool(args.overlay), heatmap=bool(args.heatmap), alpha=args.alpha, size=size,
                                  **decoding)
                written = [_save_input(args, image, e.prediction)] if args.save_input else []
                for pattern, png in ((args.heatmap, e.heatmap_png), (args.overlay, e.overlay_png)):
                    if pattern:
                        written.append(_output_path(pattern, image, len(args.images)))
                        _write_picture(png(), written[-1])
                if args.json:
                    print(e.to_json(), flush=True)
                else:
                    _print_top(image, e.prediction.top_k)
                    empty = ": empty map (no positive evidence)" if e.empty else ""
                    print(f"  {e.method} at {e.layer} for {e.label} ({e.score_kind} {e.score:.4f}){empty}")
                    for path in written:
                        print(f"  wrote {path}")
            else:
                p = model.predict(image, args.top_k, **decoding)
                if args.save_input:
                    _save_input(args, image, p)
                if args.json:
                    print(p.to_json(), flush=True)
                else:
                    _print_top(image, p.top_k)
        except (effcam.Error, OSError) as error:
            failed = True
            print(f"effcam: {error}", file=sys.stderr, flush=True)
            if args.json:
                print(effcam._effcam.error_json(str(image), str(error)), flush=True)
    return 1 if failed else 0


def _convert(args):
    input_size = None
    if args.input_size:
        try:
            input_size = tuple(int(side) for side in args.input_size.split(","))
        except ValueError:  # int() of a part that is not a number
            raise effcam.ValueError(f"--input-size must be H,W, got '{args.input_size}'") from None
    report = effcam.convert(args.input, args.output, args.dtype, args.labels, input_size)
    sys.stdout.write(str(report))  # effcam-convert's lines, each ending in a newline
    return 0


def _layers(args):
    model = effcam.Model(args.model, cam_layers=[])
    for layer in model.layers:
        print(f"{layer.name:<40} {layer.class_name:<24} {layer.height}x{layer.width}x{layer.channels}")
    print(f"default Grad-CAM layer: {model.default_cam_layer}")
    return 0


def _parser():
    parser = argparse.ArgumentParser(prog="python -m effcam", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("predict", "explain"):
        command = commands.add_parser(name, help=f"{name} images with a .effcam model")
        command.add_argument("--model", required=True)
        command.add_argument("images", nargs="+", metavar="IMAGE")
        command.add_argument("--top-k", type=int, default=5)
        command.add_argument("--json", action="store_true", help="one JSON line per image, as effcam-predict --json")
        command.add_argument("--threads", type=int, default=1)
        command.add_argument("--exif-orientation", default="ignore",
                             help="ignore (as PIL's Image.open) or apply: turn the image upright first")
        command.add_argument("--decode", default="exact", help="exact, or fast: JPEG DCT scaling as PIL's draft()")
        command.add_argument("--save-input", metavar="OUT.png", help="write the 8-bit image the model receives")
        command.add_argument("--max-image-mib", type=int, metavar="MIB",
                             help="refuse images whose decoding needs more (default: 24 B/pixel of 100 MP + 4 MiB)")
    explain = commands.choices["explain"]
    explain.add_argument("--method", default="gradcam",
                         help="gradcam, gradcam++, hirescam, xgradcam, layercam or eigencam")
    explain.add_argument("--layer", help="the target layer (default: the model's last convolution)")
    explain.add_argument("--score", default="logit", help="logit (the default, as effcam-predict) or prob")
    explain.add_argument("--class-index", type=int, help="the class to explain (default: the best)")
    explain.add_argument("--overlay", help="write the overlay here (.png, or any format PIL writes)")
    explain.add_argument("--heatmap", help="write the heatmap here")
    explain.add_argument("--size", default="model", help="pictures at the model's input size or the original's")
    explain.add_argument("--alpha", type=float, default=0.4, help="the map's weight in the overlay")
    convert = commands.add_parser("convert", help="convert a Keras .keras / .h5 model to .effcam")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument("--dtype", default="fp16", choices=("fp16", "fp32"))
    convert.add_argument("--labels", help="a file with one label per line")
    convert.add_argument("--input-size", help="H,W for models declared with None spatial dimensions")
    layers = commands.add_parser("layers", help="list the layers a CAM can target")
    layers.add_argument("--model", required=True)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    run = {"predict": lambda: _classify(args, False), "explain": lambda: _classify(args, True),
           "convert": lambda: _convert(args), "layers": lambda: _layers(args)}[args.command]
    try:
        return run()
    except (effcam.Error, OSError) as error:
        print(f"effcam: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
