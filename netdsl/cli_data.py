"""``netdsl data``: Caffe's data tools, ``convert`` (``convert_imageset``) and ``mean``
(``compute_image_mean``), with progress bars."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["add_data_parser"]


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        h, w = (int(p) for p in parts) if len(parts) == 2 else (int(parts[0]),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 256x256; got '{text}'") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got '{text}'")
    return h, w


def add_data_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="Caffe's data tools: convert images to LMDB, mean image",
                       description="convert: a folder of class folders or a list file of "
                       "'path label' lines to an LMDB of Caffe Datum records "
                       "(convert_imageset); mean: the mean image of an LMDB, a folder or a "
                       "list, as a .binaryproto (compute_image_mean).")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    conv = dsub.add_parser("convert", help="images or a list file -> an LMDB of Datum records")
    conv.add_argument("source", help="a folder of class folders, or a 'path label' list file")
    conv.add_argument("-o", "--output", required=True, help="the new LMDB folder")
    conv.add_argument("--root", default="", help="list file: the folder its paths are in")
    conv.add_argument("--resize", type=_size, default=None, metavar="HxW",
                      help="resize every image to HxW (bilinear, as OpenCV)")
    conv.add_argument("--encoded", action="store_true",
                      help="store the image files (JPEG/PNG), not raw pixels")
    conv.add_argument("--encode-type", choices=["jpg", "png"], default="",
                      help="with --encoded: re-encode as this")
    conv.add_argument("--gray", action="store_true", help="one grey channel")
    conv.add_argument("--shuffle", action="store_true", help="shuffle the images (seeded)")
    conv.add_argument("--seed", type=int, default=0)
    conv.add_argument("--workers", type=int, default=None, metavar="N",
                      help="processes decoding images (default: one per core but one)")
    conv.set_defaults(func=cmd_data_convert)
    mean = dsub.add_parser("mean", help="the mean image of an LMDB, a folder or a list file")
    mean.add_argument("source")
    mean.add_argument("-o", "--output", required=True, help="a .binaryproto file")
    mean.add_argument("--root", default="", help="list file: the folder its paths are in")
    mean.add_argument("--format", choices=["rich", "json"], default="rich")
    mean.set_defaults(func=cmd_data_mean)


@contextmanager
def _bar(description: str, fmt: str = "rich") -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar (ETA, items/s) on stderr; nothing when the output is JSON."""
    if fmt != "rich":
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TimeRemainingColumn,
    )

    with Progress(f"[bold]{description}", BarColumn(), MofNCompleteColumn(),
                  TaskProgressColumn(), TimeRemainingColumn(),
                  console=Console(file=sys.stderr)) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
        yield update


def cmd_data_convert(args: argparse.Namespace) -> int:
    from netdsl.runtime.data import resolve_workers
    from netdsl.runtime.data.imageset import ConvertOptions, convert_imageset

    options = ConvertOptions(resize=args.resize, encoded=args.encoded,
                             encode_type=args.encode_type, gray=args.gray,
                             shuffle=args.shuffle, seed=args.seed)
    workers = resolve_workers(-1 if args.workers is None else args.workers)
    with _bar("convert") as progress:
        n = convert_imageset(args.source, args.output, options, root=args.root,
                             workers=workers, progress=progress)
    print(f"wrote {n} images to {args.output}")
    return 0


def cmd_data_mean(args: argparse.Namespace) -> int:
    from netdsl.runtime.data.imageset import compute_mean

    with _bar("mean", args.format) as progress:
        mean = compute_mean(args.source, args.output, root=args.root, progress=progress)
    channels = [round(float(v), 4) for v in mean.mean(axis=(1, 2))]
    if args.format == "json":
        print(json.dumps({"output": args.output, "shape": list(mean.shape),
                          "channel_means": channels}))
    else:
        print(f"wrote the {'x'.join(map(str, mean.shape))} mean image to {args.output}; "
              f"per channel (as stored): {', '.join(map(str, channels))}")
    return 0
