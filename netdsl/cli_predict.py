"""``netdsl classify`` and ``netdsl features``: trained weights at work (Caffe's
``python/classify.py`` and ``tools/extract_features``)."""

from __future__ import annotations

import argparse
from typing import Any

from .cli_args import nonfinite_arg, positive, spec_args

__all__ = ["add_predict_parsers"]


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help="the torch device for the whole net (default: cuda if there is one)")


def _classify_parser(sub: Any) -> None:
    p = sub.add_parser("classify", help="top-k classes of unlabelled images",
                       description="Caffe's classify.py: each image transformed as the "
                       "spec's TEST data (resize, crop, mean, scale, channel order), the "
                       "class probabilities ranked.")
    spec_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE|FOLDER",
                   help="image files, or folders of them")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="a .safetensors (a snapshot's too) or .caffemodel file")
    p.add_argument("--top", type=positive, default=5, help="classes per image (default 5)")
    p.add_argument("--crops", type=int, choices=[1, 10], default=None,
                   help="centre crop, or 10 crops averaged (default: the data's test_crops)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="class names, one a line (default: the training data's, if known)")
    p.add_argument("--batch", type=positive, default=32, help="images per forward pass")
    p.add_argument("--format", choices=["rich", "json"], default="rich",
                   help="a table, or one JSON object per image")
    _device_arg(p)
    nonfinite_arg(p)
    p.set_defaults(func=cmd_classify)


def cmd_classify(args: argparse.Namespace) -> int:
    from netdsl.runtime.predict import classify, print_predictions

    predictions = classify(args.spec, args.weights, args.images, top=args.top,
                           crops=args.crops, labels=args.labels, device=args.device,
                           batch=args.batch, overrides=dict(args.overrides),
                           allow_nonfinite=args.allow_nonfinite)
    print_predictions(predictions, args.format)
    return 0


def _features_parser(sub: Any) -> None:
    p = sub.add_parser("features", help="save chosen blobs over the test data",
                       description="Caffe's extract_features: the TEST net over its data "
                       "(or --data), the named blobs saved one row per image.")
    spec_args(p)
    p.add_argument("--weights", required=True, metavar="FILE")
    p.add_argument("--blobs", required=True, metavar="NAME[,NAME...]",
                   help="blobs to save, e.g. fc7 or fc6,fc7")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help=".npy (one blob), .npz or .safetensors (each blob, and label)")
    p.add_argument("--data", dest="data_path", default=None, metavar="PATH",
                   help="where the data is (replaces the spec's TEST data path)")
    p.add_argument("--batches", type=positive, default=None, metavar="N",
                   help="only the first N batches (default: all the data)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="processes decoding the data (default 0: none)")
    p.add_argument("--format", choices=["rich", "json"], default="rich",
                   help="a progress bar, or one JSON line at the end")
    _device_arg(p)
    nonfinite_arg(p)
    p.set_defaults(func=cmd_features)


def cmd_features(args: argparse.Namespace) -> int:
    from netdsl.runtime.predict import extract_features

    blobs = [b.strip() for b in args.blobs.split(",") if b.strip()]
    extract_features(args.spec, args.weights, blobs, args.output, data_path=args.data_path,
                     batches=args.batches, device=args.device, workers=args.workers,
                     overrides=dict(args.overrides), fmt=args.format,
                     allow_nonfinite=args.allow_nonfinite)
    return 0


def add_predict_parsers(sub: Any) -> None:
    """``classify`` and ``features``."""
    for add in (_classify_parser, _features_parser):
        add(sub)
