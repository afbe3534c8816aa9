"""Caffe's oldest net format (V0), upgraded to V1 ``layers`` as Caffe itself does.

A V0 net wraps each layer's settings in a nested ``layer`` block, with its own field
names and lower-case type strings::

    layers { layer { name: "conv1" type: "conv" num_output: 96 kernelsize: 11 stride: 4
                     blobs_lr: 1 weight_decay: 1 }
             bottom: "data" top: "conv1" }

Caffe reads such files through ``UpgradeV0Net`` (BVLC caffe src/caffe/util/
upgrade_proto.cpp), and so does :func:`upgrade_v0`, step for step:

* ``UpgradeV0PaddingLayers``: a ``"padding"`` layer is removed; the conv or pool layer
  that reads its top gets its ``pad`` and reads the padding layer's bottom instead;
* ``UpgradeV0LayerParameter``: each V0 field goes to the V1 field and ``*_param`` block
  Caffe puts it in for that layer type (``kernelsize`` to ``convolution_param.kernel_size``
  for a conv, to ``pooling_param.kernel_size`` for a pool; ``meanfile`` to
  ``transform_param.mean_file``...), and the type string becomes its V2 type.

The result is a V1 net, which :mod:`netdsl.caffe_compat` goes on to upgrade as it does
any V1 file. Every field keeps the span it was written at, so later errors point into
the V0 text. Where Caffe logs an error and goes on (a field the layer type has no use
for, which its upgrade drops), netdsl warns; where Caffe stops (an unknown type, a
padding layer feeding anything but one conv or pool), netdsl stops with an error.
"""

from __future__ import annotations

import re

from . import syntax as s
from .caffe_pb import V0_TO_V2_TYPE
from .diagnostics import Span, SpecError, did_you_mean, raise_all, warn

__all__ = ["is_v0", "upgrade_v0"]

#: V0 field -> (V1 field, the V0 types whose ``*_param`` block takes it), as in
#: ``UpgradeV0LayerParameter``. The block is the type's own (``conv`` ->
#: ``convolution_param``); a field given to any other type is dropped, as Caffe does.
_PARAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "num_output": ("num_output", ("conv", "innerproduct")),
    "biasterm": ("bias_term", ("conv", "innerproduct")),
    "weight_filler": ("weight_filler", ("conv", "innerproduct")),
    "bias_filler": ("bias_filler", ("conv", "innerproduct")),
    "pad": ("pad", ("conv", "pool")),
    "kernelsize": ("kernel_size", ("conv", "pool")),
    "group": ("group", ("conv",)),
    "stride": ("stride", ("conv", "pool")),
    "pool": ("pool", ("pool",)),
    "dropout_ratio": ("dropout_ratio", ("dropout",)),
    "local_size": ("local_size", ("lrn",)),
    "alpha": ("alpha", ("lrn",)),
    "beta": ("beta", ("lrn",)),
    "k": ("k", ("lrn",)),
    "source": ("source", ("data", "hdf5_data", "images", "window_data", "infogain_loss")),
    "batchsize": ("batch_size", ("data", "hdf5_data", "images", "window_data")),
    "rand_skip": ("rand_skip", ("data", "images")),
    "shuffle_images": ("shuffle", ("images",)),
    "new_height": ("new_height", ("images",)),
    "new_width": ("new_width", ("images",)),
    "concat_dim": ("concat_dim", ("concat",)),
    "det_fg_threshold": ("fg_threshold", ("window_data",)),
    "det_bg_threshold": ("bg_threshold", ("window_data",)),
    "det_fg_fraction": ("fg_fraction", ("window_data",)),
    "det_context_pad": ("context_pad", ("window_data",)),
    "det_crop_mode": ("crop_mode", ("window_data",)),
}
#: V0 fields that Caffe moves to ``transform_param``, whatever the type (only its data
#: layers read that block, so netdsl drops them elsewhere, with a warning).
_TRANSFORM = {"scale": "scale", "meanfile": "mean_file", "cropsize": "crop_size",
              "mirror": "mirror"}
_TRANSFORM_TYPES = ("data", "images", "window_data")
#: V0 fields that stay on the V1 layer itself.
_LAYER_LEVEL = ("name", "type", "blobs", "blobs_lr", "weight_decay")
#: Copied whole into the V1 layer for this type.
_WHOLE_BLOCKS = {"hdf5_output_param": "hdf5_output"}
#: In V0LayerParameter, but never read by Caffe's upgrade (nor by any V0 layer).
_NEVER_UPGRADED = ("new_num", "new_channels")
_PADDING = "padding"
_PADDED = ("conv", "pool")  # the types a padding layer may feed

V0_FIELDS = frozenset((*_PARAMS, *_TRANSFORM, *_LAYER_LEVEL, *_WHOLE_BLOCKS, *_NEVER_UPGRADED))


def _v0_block(item: s.Item) -> s.Block | None:
    """The nested V0 ``layer { }`` of a top-level ``layers { }``, if it has one."""
    if not (isinstance(item, s.Field) and item.key == "layers" and isinstance(item.value, s.Block)):
        return None
    for inner in item.value.items:
        if isinstance(inner, s.Field) and inner.key == "layer" and isinstance(inner.value, s.Block):
            return inner.value
    return None


def is_v0(file: s.File) -> bool:
    """Caffe's ``NetNeedsV0ToV1Upgrade``: some ``layers`` holds a nested ``layer``."""
    return any(_v0_block(i) is not None for i in file.items)


def upgrade_v0(file: s.File) -> s.File:
    """A V0 net as the V1 net Caffe's ``UpgradeV0Net`` makes of it (spans kept)."""
    errors: list[SpecError] = []
    items = _fold_padding(file.items, errors)
    out = [_upgrade_layer(i, errors) if _v0_block(i) is not None else i for i in items]
    raise_all(errors)
    return s.File(file.path, tuple(out), file.span)


def _type_of(v0: s.Block) -> str | None:
    t = v0.scalar("type")
    return None if t is None else str(t)


def _strings(block: s.Block, key: str) -> list[tuple[s.Field, str]]:
    """The values of a repeated string field (``bottom``), each with its field."""
    out: list[tuple[s.Field, str]] = []
    for f in block.fields(key):
        values = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
        out.extend((f, str(v.value)) for v in values if isinstance(v, s.Scalar))
    return out


# --------------------------------------------------------------------------------------
# UpgradeV0PaddingLayers
# --------------------------------------------------------------------------------------


def _fold_padding(items: tuple[s.Item, ...], errors: list[SpecError]) -> list[s.Item]:
    """Remove the padding layers, moving each one's ``pad`` into the conv or pool layer
    that reads its top (and wiring that layer to the padding layer's bottom)."""
    producer: dict[str, s.Field] = {}  # blob -> the `layers` item that wrote it last
    out: list[s.Item] = []
    for item in items:
        if not (isinstance(item, s.Field) and item.key in ("layers", "layer")
                and isinstance(item.value, s.Block)):
            out.append(item)
            continue
        outer = item.value
        v0 = _v0_block(item)
        if v0 is None or _type_of(v0) != _PADDING:
            if v0 is not None:
                new_outer = _take_padding(outer, v0, producer, errors)
                if new_outer is not outer:
                    item = s.Field(item.key, new_outer, item.span, item.key_span, item.notes)
            out.append(item)
        for _, top in _strings(outer, "top"):
            producer[top] = item
    return out


def _take_padding(outer: s.Block, v0: s.Block, producer: dict[str, s.Field],
                  errors: list[SpecError]) -> s.Block:
    """``outer`` with its bottoms that come from padding layers rewired, and their pad."""
    bottoms = _strings(outer, "bottom")
    new_bottom: dict[int, s.Field] = {}  # id of a bottom field -> its replacement
    pad: s.Field | None = None
    for field, blob in bottoms:
        source = producer.get(blob)
        source_v0 = _v0_block(source) if source is not None else None
        if source is None or source_v0 is None or _type_of(source_v0) != _PADDING:
            continue
        assert isinstance(source.value, s.Block)
        if not _padding_checks(outer, v0, source.value, source_v0, blob, field, errors):
            continue
        (pad_bottom, pad_blob), = _strings(source.value, "bottom")
        value = s.Scalar(pad_blob, "string", pad_bottom.value.span)
        new_bottom[id(field)] = s.Field("bottom", value, field.span, field.key_span, field.notes)
        given = source_v0.first("pad")
        pad = given if given is not None else s.Field(
            "pad", s.Scalar(0, "int", source.span), source.span, source.span)
    if not new_bottom:
        return outer
    items: list[s.Item] = []
    for i in outer.items:
        if isinstance(i, s.Field) and id(i) in new_bottom:
            items.append(new_bottom[id(i)])
        elif isinstance(i, s.Field) and i.key == "layer" and i.value is v0 and pad is not None:
            body = tuple(f for f in v0.items if not (isinstance(f, s.Field) and f.key == "pad"))
            items.append(s.Field(i.key, s.Block((*body, pad), v0.span), i.span, i.key_span,
                                 i.notes))
        else:
            items.append(i)
    return s.Block(tuple(items), outer.span)


def _padding_checks(outer: s.Block, v0: s.Block, pad_outer: s.Block, pad_v0: s.Block,
                    blob: str, bottom: s.Field, errors: list[SpecError]) -> bool:
    """Caffe's CHECKs on a padding layer and its reader; False (and an error) if one fails."""
    name = pad_v0.scalar("name") or blob
    reader = _type_of(v0)
    problem = None
    if reader not in _PADDED:
        problem = (f"the V0 padding layer '{name}' feeds a '{reader}' layer; Caffe folds "
                   "padding only into a conv or pool layer")
    elif len(_strings(outer, "bottom")) != 1:
        problem = f"a layer fed by the V0 padding layer '{name}' must have one bottom"
    elif len(_strings(pad_outer, "bottom")) != 1 or len(_strings(pad_outer, "top")) != 1:
        problem = f"the V0 padding layer '{name}' must have one bottom and one top"
    if problem is not None:
        errors.append(SpecError(problem, bottom.span,
                                "give the conv or pool layer a pad instead"))
        return False
    return True


# --------------------------------------------------------------------------------------
# UpgradeV0LayerParameter
# --------------------------------------------------------------------------------------


def _block_name(v0_type: str) -> str:
    """The ``*_param`` block of a V0 type: its V2 type in snake case (``conv`` ->
    ``Convolution`` -> ``convolution_param``), as in caffe.proto."""
    v2 = V0_TO_V2_TYPE[v0_type]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", v2).lower() + "_param"


def _renamed(f: s.Field, key: str) -> s.Field:
    return s.Field(key, f.value, f.span, f.key_span, f.notes)


def _upgrade_layer(item: s.Item, errors: list[SpecError]) -> s.Item:
    """One V0 ``layers { layer { ... } bottom top }`` as Caffe's V1 ``layers``."""
    v0 = _v0_block(item)
    assert v0 is not None and isinstance(item, s.Field) and isinstance(item.value, s.Block)
    v0_type = _type_of(v0)
    type_field = v0.first("type")
    if v0_type is not None and v0_type not in V0_TO_V2_TYPE:
        assert type_field is not None
        known = [*V0_TO_V2_TYPE, _PADDING]
        hint = did_you_mean(v0_type, known) or "V0 types are " + ", ".join(sorted(known))
        errors.append(SpecError(f"unknown V0 layer type '{v0_type}'", type_field.value.span,
                                hint))
        return item
    head: list[s.Item] = []
    blocks: dict[str, list[s.Item]] = {}
    spans: dict[str, Span] = {}

    def put(block: str, f: s.Field) -> None:
        blocks.setdefault(block, []).append(f)
        spans.setdefault(block, f.span)

    for f in v0.items:
        if not isinstance(f, s.Field):
            head.append(f)
            continue
        key = f.key
        if key == "type" and v0_type is not None:
            head.append(s.Field("type", s.Scalar(V0_TO_V2_TYPE[v0_type], "string",
                                                 f.value.span), f.span, f.key_span, f.notes))
        elif key in _LAYER_LEVEL:
            head.append(f)
        elif key in _PARAMS:
            new_key, types = _PARAMS[key]
            if v0_type in types:
                put(_block_name(v0_type), _renamed(f, new_key))
            else:
                _dropped(f, v0_type, "Caffe's upgrade has no place for it in this type")
        elif key in _TRANSFORM:
            if v0_type in _TRANSFORM_TYPES:
                put("transform_param", _renamed(f, _TRANSFORM[key]))
            else:
                _dropped(f, v0_type, "Caffe moves it to transform_param, which only data "
                         "layers read")
        elif key in _WHOLE_BLOCKS and isinstance(f.value, s.Block):
            if v0_type == _WHOLE_BLOCKS[key]:
                head.append(f)
            else:
                _dropped(f, v0_type, "Caffe's upgrade has no place for it in this type")
        elif key in _NEVER_UPGRADED:
            _dropped(f, v0_type, "Caffe's upgrade never reads it")
        else:
            errors.append(SpecError(f"unknown field '{key}' in a V0 layer", f.key_span,
                                    did_you_mean(key, V0_FIELDS)))
    for block, fields in blocks.items():
        head.append(s.Field(block, s.Block(tuple(fields), spans[block]), spans[block],
                            spans[block]))
    for f in item.value.items:
        if isinstance(f, s.Field) and f.key in ("bottom", "top"):
            head.append(f)
        elif not (isinstance(f, s.Field) and f.key == "layer"):
            what = f"'{f.key}'" if isinstance(f, s.Field) else "this statement"
            warn(f"{what} beside a V0 'layer' block is dropped, as Caffe's upgrade does",
                 f.span, "write the layer in V1 or V2 form to keep it")
    return s.Field(item.key, s.Block(tuple(head), item.value.span), item.span, item.key_span,
                   item.notes)


def _dropped(f: s.Field, v0_type: str | None, why: str) -> None:
    """Caffe's ``LOG(ERROR) << "Unknown parameter ..."``: the field is dropped, and the
    upgrade goes on."""
    kind = f"a '{v0_type}' layer" if v0_type else "a layer without a type"
    warn(f"V0 field '{f.key}' is ignored in {kind}: {why}", f.span,
         "remove it, or check the layer's type")
