"""Using trained weights: pycaffe's ``Transformer``, ``classify`` and ``extract_features``.

* :class:`Transformer` turns image files (or arrays) into the net's input exactly as the
  spec's TEST data is transformed for ``netdsl test``: decoded to the channels and channel
  order the data has (BGR where it is), resized, centre (or 10) cropped, the mean
  subtracted, scaled -- the same :class:`~netdsl.runtime.data.transforms.Pipeline` the
  loader runs. Pixels are scaled from 0..255 to the range the training source held
  (``pixel_max``: the embedded digits are 0..1), as pycaffe's ``raw_scale``.
* :func:`classify` is Caffe's ``python/classify.py``: the top-k classes of unlabelled
  images, the class scores softmaxed where the net does not (and averaged over 10 crops).
* :func:`extract_features` is Caffe's ``tools/extract_features.cpp``: chosen blobs of
  the TEST net over its data, saved as ``.npy``, ``.npz`` or ``.safetensors``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

import netdsl
from netdsl.diagnostics import DataError, Span, UsageError, did_you_mean
from netdsl.files import checked_output, read_text, write_output
from netdsl.runtime.data import (
    IMAGE_EXTENSIONS,
    SOURCES,
    CenterCrop,
    Pipeline,
    ReplicateChannels,
    Resize,
    SubtractMean,
    TenCrop,
    average_crops,
    build_loader,
    load_mean_file,
    read_image,
)
from netdsl.runtime.data.transforms import to_tensor
from netdsl.runtime.evaluate import prediction_blob
from netdsl.runtime.loading import data_config, feeds_of, layer_input_shapes
from netdsl.runtime.progress import Bar, json_line
from netdsl.sections import DataConfig, phase_data

__all__ = ["Prediction", "Transformer", "classify", "extract_features", "image_files",
           "print_predictions", "read_labels"]


@dataclass(frozen=True, eq=False)
class Transformer:
    """Image files or arrays -> the net's input, as the spec's TEST data is made.

    ``input_shape`` is the net's ``(C, H, W)``; ``channels`` the channels images are
    decoded to (1 grey, 3 colour), in BGR order if ``bgr``; ``raw_scale`` multiplies the
    decoded 0..255 pixels before the pipeline. Build one with :meth:`from_spec`.
    """

    input_shape: tuple[int, int, int]
    pipeline: Pipeline
    channels: int = 3
    bgr: bool = False
    raw_scale: float = 1.0
    min_size: tuple[int, int] | None = None

    @property
    def crops(self) -> int:
        """Inputs per image: 10 with 10-crop testing, else 1."""
        return self.pipeline.crops

    @classmethod
    def from_net(cls, net: Any, *, crops: int | None = None,
                 mirror: bool = True) -> Transformer:
        """The TEST transforms of a :class:`netdsl.Net`'s spec (its ``data {}`` section, or
        its Caffe data layer's ``transform_param``) for its image input; ``crops``: 1 or
        10 (default the data's); ``mirror``: whether 10 crops include the mirrors (a net
        trained without mirroring: False)."""
        return cls.from_config(_config(net.ir), feeds_of(net.compiled).shape, crops=crops,
                               mirror=mirror)

    @classmethod
    def from_spec(cls, spec: str | os.PathLike[str], *, crops: int | None = None,
                  overrides: Mapping[str, str] | None = None) -> Transformer:
        """As :meth:`from_net`, from a spec file (its TEST net is compiled on the CPU to
        know the input's shape)."""
        setup = netdsl.load_training(spec, overrides)
        ir = setup.test_net
        cfg = _config(ir)
        net = netdsl.Net(ir, device="cpu",
                         inputs=layer_input_shapes(ir, cfg) if cfg is not None else None)
        return cls.from_net(net, crops=crops, mirror=_trained_mirrored(setup.train_net))

    @classmethod
    def from_config(cls, cfg: DataConfig | None, input_shape: Sequence[int], *,
                    crops: int | None = None, span: Span | None = None,
                    mirror: bool = True) -> Transformer:
        """The TEST transforms of a data config (``None``: resize to the input only) for a
        net input of ``input_shape`` ``(C, H, W)``: the rules of ``build_loader``."""
        C, H, W = (int(d) for d in input_shape)
        cfg = cfg if cfg is not None else DataConfig(source="folder")
        n_crops = cfg.test_crops if crops is None else crops
        if n_crops not in (1, 10):
            raise UsageError(f"crops must be 1 or 10, got {n_crops}")
        channels = cfg.channels or (1 if C == 1 else 3)
        if channels not in (1, C):
            raise DataError(f"images decoded to {channels} channels cannot feed an input "
                            f"of {C}", span, "set the data's channels to 1 or 3")
        crop: CenterCrop | TenCrop | None = None
        resize: Resize | None = None
        if cfg.crop:
            k = cfg.crop
            if (H, W) != (k, k):
                raise DataError(f"crop {k} makes {k}x{k} images, but the net's input is "
                                f"{H}x{W}", span)
            resize = Resize(cfg.resize) if cfg.resize else None
            crop = TenCrop((k, k), mirror) if n_crops == 10 else CenterCrop((k, k))
        else:
            if n_crops == 10:
                raise DataError("10-crop testing needs the data to be cropped", span,
                                "set crop in the data's test { } block")
            if len(cfg.resize) == 1 or (cfg.resize and tuple(cfg.resize) != (H, W)):
                raise DataError(f"resize {list(cfg.resize)} does not make the net's "
                                f"{H}x{W} input", span, "resize to the input, or add a crop")
            resize = Resize((H, W))
        mean: SubtractMean | None = None
        if cfg.mean_value:
            if len(cfg.mean_value) not in (1, C):
                raise DataError(f"{len(cfg.mean_value)} mean values for a {C}-channel input",
                                span)
            mean = SubtractMean(values=tuple(float(v) for v in cfg.mean_value))
        elif cfg.mean_file:
            mean = SubtractMean(image=load_mean_file(cfg.mean_file))
        source = SOURCES[cfg.source].cls if cfg.source in SOURCES else None
        decodes = cfg.source in ("folder", "list")
        order = getattr(source, "channel_order", "RGB")
        bgr = channels == 3 and (cfg.bgr or (not decodes and order == "BGR"))
        pixel_max = float(getattr(source, "pixel_max", 255.0)) if not decodes else 255.0
        min_size = ((cfg.resize[0], cfg.resize[-1]) if cfg.resize and cfg.reduced_decode
                    else None)
        pipeline = Pipeline(resize=resize, replicate=ReplicateChannels(C) if channels != C
                            else None, mean=mean, scale=cfg.scale, crop=crop)
        return cls((C, H, W), pipeline, channels, bgr, pixel_max / 255.0, min_size)

    def load(self, path: str | os.PathLike[str]) -> np.ndarray:
        """An image file decoded as the data is: ``(C, H, W)`` uint8."""
        return read_image(path, self.channels, self.bgr, self.min_size)

    def preprocess(self, image: str | os.PathLike[str] | np.ndarray | torch.Tensor
                   ) -> torch.Tensor:
        """One image (a path, or a ``(C, H, W)`` / ``(H, W)`` array of 0..255 pixels in
        the data's channel order) -> ``(crops, C, h, w)`` float32, the net's input."""
        if isinstance(image, str | os.PathLike):
            image = self.load(image)
        x = image if isinstance(image, torch.Tensor) else to_tensor(np.asarray(image))
        if x.dim() == 2:
            x = x[None]
        if x.dim() != 3 or x.shape[0] not in (1, 3):
            raise DataError(f"an image is (C, H, W) with 1 or 3 channels, got shape "
                            f"{list(x.shape)}")
        if self.raw_scale != 1.0:
            x = x.float() * self.raw_scale
        return self.pipeline.finish(self.pipeline.prefix(x[None]))

    def batch(self, images: Iterable[str | os.PathLike[str] | np.ndarray | torch.Tensor]
              ) -> torch.Tensor:
        """Several images -> ``(N * crops, C, h, w)`` (each image's crops together)."""
        return torch.cat([self.preprocess(i) for i in images])


def _trained_mirrored(train_net: netdsl.ir.Net) -> bool:
    """Whether the net was trained on mirrored images (10 crops then include mirrors, as
    ``netdsl test`` does); True where the TRAIN phase has no data section."""
    found = phase_data(train_net)
    return found.config.mirror if found is not None else True


def _config(ir: Any) -> DataConfig | None:
    found = phase_data(ir)
    return None if found is None else found.config


# ------------------------------------------------------------------------------ classify


@dataclass(frozen=True)
class Prediction:
    """One image's top classes, best first: index, probability and name (if known)."""

    image: str
    classes: tuple[int, ...]
    scores: tuple[float, ...]
    names: tuple[str | None, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.image, "top": [
            {"class": c, "score": s, "name": n}
            for c, s, n in zip(self.classes, self.scores, self.names, strict=True)]}


def image_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Image files and folders -> the files: a folder's images (by extension) sorted."""
    out: list[str] = []
    for p in (os.fspath(q) for q in paths):
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.lower().endswith(IMAGE_EXTENSIONS)
                           and os.path.isfile(os.path.join(p, f)))
            if not found:
                raise DataError(f"no images in folder {p}", Span(p),
                                f"images end in {', '.join(IMAGE_EXTENSIONS)}")
            out += found
        elif os.path.exists(p):
            out.append(p)
        else:
            raise DataError(f"image not found: {p}", Span(p))
    if not out:
        raise UsageError("no images given", None, "name image files or folders")
    return out


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Class names, one a line (Caffe's ``synset_words.txt``); blank lines dropped at
    the end only, so line k names class k."""
    lines = read_text(path, "labels file", "data").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def _source_names(cfg: DataConfig | None) -> list[str] | None:
    """The training data's class names where they are cheap to know: the digits', or
    the class folders of a folder source (sorted, as the folder source numbers them)."""
    if cfg is None:
        return None
    names = getattr(SOURCES[cfg.source].cls, "label_names", None) if cfg.source in SOURCES \
        else None
    if names:
        return list(names)
    if cfg.source == "folder" and cfg.path and os.path.isdir(cfg.path):
        root = cfg.path
        if os.path.isdir(os.path.join(root, "train")):
            root = os.path.join(root, "train")
        return sorted(e.name for e in os.scandir(root) if e.is_dir())
    return None


def classify(spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None,
             images: Sequence[str | os.PathLike[str]], *, top: int = 5,
             crops: int | None = None, labels: str | os.PathLike[str] | None = None,
             device: str | None = None, batch: int = 32,
             overrides: Mapping[str, str] | None = None,
             allow_nonfinite: bool = False) -> list[Prediction]:
    """The ``top`` classes of each image (files or folders of them), best first.

    The spec's TEST net and its data's transforms (:class:`Transformer`); the scores
    are the blob ``netdsl test`` ranks (softmaxed unless they are probabilities),
    averaged over the crops with ``crops=10``. ``labels``: a file of class names.
    """
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    files = image_files(images)
    setup = netdsl.load_training(spec, overrides)
    ir = setup.test_net
    cfg = _config(ir)
    net = netdsl.Net(ir, weights, device=device, strict=True, allow_nonfinite=allow_nonfinite,
                     inputs=layer_input_shapes(ir, cfg) if cfg is not None else None)
    feeds = feeds_of(net.compiled)
    transformer = Transformer.from_config(cfg, feeds.shape, crops=crops,
                                          mirror=_trained_mirrored(setup.train_net))
    pred, is_prob = prediction_blob(ir)
    names: list[str] | None = read_labels(labels) if labels else _source_names(cfg)
    out: list[Prediction] = []
    with torch.no_grad():
        for i in range(0, len(files), batch):
            chunk = files[i:i + batch]
            x = transformer.batch(chunk)
            scores = net.compiled(outputs=[pred], **{feeds.data: x})[pred].float()
            scores = scores.reshape(x.shape[0], -1)
            probs = scores if is_prob else torch.softmax(scores, dim=1)
            probs = average_crops(probs, transformer.crops)
            if names is not None and len(names) < probs.shape[1]:
                raise DataError(f"the labels name {len(names)} classes, the net has "
                                f"{probs.shape[1]}", Span(os.fspath(labels or spec)))
            k = min(top, probs.shape[1])
            values, indices = probs.topk(k, dim=1)
            for f, v, c in zip(chunk, values.tolist(), indices.tolist(), strict=True):
                out.append(Prediction(f, tuple(c), tuple(v), tuple(
                    names[j] if names is not None else None for j in c)))
    return out


def print_predictions(predictions: Sequence[Prediction], fmt: str,
                      stream: IO[str] | None = None) -> None:
    """A rich table (image, then class, name and probability per rank), or one JSON
    object per image."""
    stream = stream if stream is not None else sys.stdout
    if fmt == "json":
        for p in predictions:
            stream.write(json_line(p.as_dict()) + "\n")
        stream.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    table.add_column("image", overflow="fold")
    table.add_column("#", justify="right")
    table.add_column("class", justify="right")
    table.add_column("name", overflow="fold")
    table.add_column("prob", justify="right")
    for p in predictions:
        for rank, (c, s, n) in enumerate(zip(p.classes, p.scores, p.names, strict=True)):
            table.add_row(os.path.basename(p.image) if rank == 0 else "", str(rank + 1),
                          str(c), n or "", f"{s:.4f}", end_section=rank == len(p.classes) - 1)
    Console(file=stream, width=80, highlight=False).print(table)


# ------------------------------------------------------------------------------ features


FEATURE_FORMATS = (".npy", ".npz", ".safetensors")


def extract_features(spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None,
                     blobs: Sequence[str], output: str | os.PathLike[str], *,
                     data_path: str | None = None, batches: int | None = None,
                     device: str | None = None, workers: int | None = 0,
                     overrides: Mapping[str, str] | None = None, fmt: str = "rich",
                     out: IO[str] | None = None, allow_nonfinite: bool = False
                     ) -> dict[str, np.ndarray]:
    """Blobs ``blobs`` of the TEST net over its data (``data_path``: ``--data``), one row
    per image (centre crop), written to ``output``: ``.npy`` (one blob), ``.npz`` or
    ``.safetensors`` (one array per blob, and ``label``). ``batches``: that many batches
    only (Caffe's ``num_mini_batches``; default the whole data). Returns the arrays."""
    suffix = Path(output).suffix.lower()
    if suffix not in FEATURE_FORMATS:
        raise UsageError(f"-o {output}: features are written as {', '.join(FEATURE_FORMATS)}",
                         None, "end the file name in one of those")
    if not blobs:
        raise UsageError("name the blobs to extract, e.g. --blobs fc7")
    if suffix == ".npy" and len(blobs) > 1:
        raise UsageError(f"a .npy file holds one array; {len(blobs)} blobs asked for", None,
                         "write .npz or .safetensors, or extract one blob")
    checked_output(output, "features")
    stream = out if out is not None else sys.stdout
    ir = netdsl.load_training(spec, overrides).test_net
    cfg, span = data_config(ir, "test", data_path)
    cfg = replace(cfg, test_crops=1)
    net = netdsl.Net(ir, weights, device=device, strict=True, batch=cfg.batch_size,
                     inputs=layer_input_shapes(ir, cfg), allow_nonfinite=allow_nonfinite)
    for b in blobs:
        if b not in net.blobs:
            raise DataError(f"there is no blob '{b}' in net '{ir.name}'", Span(ir.path),
                            did_you_mean(b, net.blobs) or
                            f"its blobs: {', '.join(net.blobs)}")
    feeds = feeds_of(net.compiled)
    loader = build_loader(cfg, "test", feeds.shape, 0, span=span, workers=workers,
                          device=net.compiled.input_device(feeds.data))
    n, bs = loader.num_samples, cfg.batch_size
    total = loader.epoch_size if batches is None else min(batches, loader.epoch_size)
    parts: dict[str, list[np.ndarray]] = {b: [] for b in (*blobs, "label")}
    bar = Bar(stream, fmt, "features", total)
    try:
        with torch.no_grad():
            for i in range(total):
                x, y = loader.next_batch()
                k = min(bs, n - i * bs)  # the last batch wraps around: each image once
                res = net.compiled(outputs=list(blobs), **feeds.inputs(x[:k], y[:k]))
                for b in blobs:
                    parts[b].append(res[b].detach().float().cpu().numpy())
                parts["label"].append(y[:k].cpu().numpy())
                bar.advance()
    finally:
        bar.close()
        loader.close()
    arrays = {b: np.concatenate(v) for b, v in parts.items() if v}
    if "label" in blobs:
        arrays.pop("label", None)
    _save(output, arrays, blobs, suffix)
    summary = {"file": os.fspath(output), "images": int(next(iter(arrays.values())).shape[0]),
               **{f"shape_{b}": list(arrays[b].shape) for b in blobs}}
    if fmt == "json":
        stream.write(json_line(summary) + "\n")
    elif fmt == "rich":
        shapes = ", ".join(f"{b} {list(arrays[b].shape)}" for b in blobs)
        stream.write(f"Wrote {summary['images']} images' features to {output}: {shapes}\n")
    stream.flush()
    return arrays


def _save(output: str | os.PathLike[str], arrays: Mapping[str, np.ndarray],
          blobs: Sequence[str], suffix: str) -> None:
    import io

    if suffix == ".safetensors":
        from netdsl.weights import save_weights

        save_weights(output, {k: torch.from_numpy(np.ascontiguousarray(v))
                              for k, v in arrays.items()})
        return
    buf = io.BytesIO()
    if suffix == ".npy":
        np.save(buf, arrays[blobs[0]], allow_pickle=False)
    else:
        savez: Any = np.savez  # numpy's stub types the keyword arrays as its options
        savez(buf, **arrays)
    write_output(output, buf.getvalue(), "features")
