"""Caffe's binary protobuf messages: a hand-written subset of BVLC caffe.proto.

Only what netdsl needs to read trained weights (``.caffemodel``), mean files
(``.binaryproto``) and LMDB/LevelDB records (``Datum``) is declared here, with Caffe's
exact field numbers and wire types, so files written by any Caffe build parse the same.
The descriptor is built in Python at import time (``FileDescriptorProto`` ->
``DescriptorPool`` -> ``GetMessageClass``): no ``protoc``, no generated ``caffe_pb2``
and no Caffe installation are needed.

Fields of the real caffe.proto that are not declared here (layer parameters, solver
settings, fork-specific extensions...) are unknown to these classes; protobuf skips
unknown fields while parsing, so a full caffemodel parses fine and simply loses them.

The messages live in a private descriptor pool under the package ``caffe``, so they
never collide with a real ``caffe_pb2`` (or another copy of this subset) imported into
the same process.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "BlobShape",
    "BlobProto",
    "Datum",
    "NetParameter",
    "LayerParameter",
    "V1LayerParameter",
    "V0LayerParameter",
    "V1_LAYER_TYPES",
    "V1_TO_V2_TYPE",
    "V0_TO_V2_TYPE",
]

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _F.LABEL_OPTIONAL
_REPEATED = _F.LABEL_REPEATED

# V1LayerParameter.LayerType: enum name -> number, exactly as in caffe.proto.
_V1_ENUM: dict[str, int] = {
    "NONE": 0,
    "ABSVAL": 35,
    "ACCURACY": 1,
    "ARGMAX": 30,
    "BNLL": 2,
    "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37,
    "CONVOLUTION": 4,
    "DATA": 5,
    "DECONVOLUTION": 39,
    "DROPOUT": 6,
    "DUMMY_DATA": 32,
    "EUCLIDEAN_LOSS": 7,
    "ELTWISE": 25,
    "EXP": 38,
    "FLATTEN": 8,
    "HDF5_DATA": 9,
    "HDF5_OUTPUT": 10,
    "HINGE_LOSS": 28,
    "IM2COL": 11,
    "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13,
    "INNER_PRODUCT": 14,
    "LRN": 15,
    "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16,
    "MVN": 34,
    "POOLING": 17,
    "POWER": 26,
    "RELU": 18,
    "SIGMOID": 19,
    "SIGMOID_CROSS_ENTROPY_LOSS": 27,
    "SILENCE": 36,
    "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21,
    "SPLIT": 22,
    "SLICE": 33,
    "TANH": 23,
    "WINDOW_DATA": 24,
    "THRESHOLD": 31,
}

#: V1 ``LayerType`` number -> enum name (``4 -> "CONVOLUTION"``).
V1_LAYER_TYPES: dict[int, str] = {num: name for name, num in _V1_ENUM.items()}

#: V1 enum name -> V2 type string, as Caffe's ``UpgradeV1LayerType`` maps them.
_V1_NAME_TO_V2: dict[str, str] = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

#: V1 ``LayerType`` number -> V2 type string (``4 -> "Convolution"``).
V1_TO_V2_TYPE: dict[int, str] = {_V1_ENUM[n]: v2 for n, v2 in _V1_NAME_TO_V2.items()}

#: V0 type strings (``V0LayerParameter.type``) -> V2 type string, following Caffe's
#: ``UpgradeV0LayerType`` and then ``UpgradeV1LayerType``. ``"padding"`` layers are
#: folded into the next conv/pool layer by Caffe and carry no blobs.
V0_TO_V2_TYPE: dict[str, str] = {
    "accuracy": "Accuracy",
    "bnll": "BNLL",
    "concat": "Concat",
    "conv": "Convolution",
    "data": "Data",
    "dropout": "Dropout",
    "euclidean_loss": "EuclideanLoss",
    "flatten": "Flatten",
    "hdf5_data": "HDF5Data",
    "hdf5_output": "HDF5Output",
    "im2col": "Im2col",
    "images": "ImageData",
    "infogain_loss": "InfogainLoss",
    "innerproduct": "InnerProduct",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MultinomialLogisticLoss",
    "pool": "Pooling",
    "relu": "ReLU",
    "sigmoid": "Sigmoid",
    "softmax": "Softmax",
    "softmax_loss": "SoftmaxWithLoss",
    "split": "Split",
    "tanh": "TanH",
    "window_data": "WindowData",
}


def _field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    ftype: int,
    label: int = _OPTIONAL,
    type_name: str | None = None,
    packed: bool = False,
) -> None:
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name is not None:
        f.type_name = type_name
    if packed:
        f.options.packed = True


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="netdsl/caffe_subset.proto", package="caffe", syntax="proto2"
    )

    m = fdp.message_type.add(name="BlobShape")
    _field(m, "dim", 1, _F.TYPE_INT64, _REPEATED, packed=True)

    m = fdp.message_type.add(name="BlobProto")
    _field(m, "shape", 7, _F.TYPE_MESSAGE, type_name=".caffe.BlobShape")
    _field(m, "data", 5, _F.TYPE_FLOAT, _REPEATED, packed=True)
    _field(m, "diff", 6, _F.TYPE_FLOAT, _REPEATED, packed=True)
    _field(m, "double_data", 8, _F.TYPE_DOUBLE, _REPEATED, packed=True)
    _field(m, "double_diff", 9, _F.TYPE_DOUBLE, _REPEATED, packed=True)
    # 4D dimensions -- deprecated in Caffe in favour of ``shape``.
    _field(m, "num", 1, _F.TYPE_INT32)
    _field(m, "channels", 2, _F.TYPE_INT32)
    _field(m, "height", 3, _F.TYPE_INT32)
    _field(m, "width", 4, _F.TYPE_INT32)

    m = fdp.message_type.add(name="Datum")
    _field(m, "channels", 1, _F.TYPE_INT32)
    _field(m, "height", 2, _F.TYPE_INT32)
    _field(m, "width", 3, _F.TYPE_INT32)
    _field(m, "data", 4, _F.TYPE_BYTES)
    _field(m, "label", 5, _F.TYPE_INT32)
    _field(m, "float_data", 6, _F.TYPE_FLOAT, _REPEATED)  # not packed in caffe.proto
    _field(m, "encoded", 7, _F.TYPE_BOOL)

    m = fdp.message_type.add(name="NetParameter")
    _field(m, "name", 1, _F.TYPE_STRING)
    _field(m, "input", 3, _F.TYPE_STRING, _REPEATED)
    _field(m, "input_shape", 8, _F.TYPE_MESSAGE, _REPEATED, ".caffe.BlobShape")
    _field(m, "input_dim", 4, _F.TYPE_INT32, _REPEATED)
    _field(m, "layer", 100, _F.TYPE_MESSAGE, _REPEATED, ".caffe.LayerParameter")
    _field(m, "layers", 2, _F.TYPE_MESSAGE, _REPEATED, ".caffe.V1LayerParameter")

    m = fdp.message_type.add(name="LayerParameter")
    _field(m, "name", 1, _F.TYPE_STRING)
    _field(m, "type", 2, _F.TYPE_STRING)
    _field(m, "bottom", 3, _F.TYPE_STRING, _REPEATED)
    _field(m, "top", 4, _F.TYPE_STRING, _REPEATED)
    _field(m, "blobs", 7, _F.TYPE_MESSAGE, _REPEATED, ".caffe.BlobProto")

    m = fdp.message_type.add(name="V1LayerParameter")
    enum = m.enum_type.add(name="LayerType")
    for name, num in _V1_ENUM.items():
        enum.value.add(name=name, number=num)
    _field(m, "bottom", 2, _F.TYPE_STRING, _REPEATED)
    _field(m, "top", 3, _F.TYPE_STRING, _REPEATED)
    _field(m, "name", 4, _F.TYPE_STRING)
    _field(m, "type", 5, _F.TYPE_ENUM, type_name=".caffe.V1LayerParameter.LayerType")
    _field(m, "blobs", 6, _F.TYPE_MESSAGE, _REPEATED, ".caffe.BlobProto")
    _field(m, "layer", 1, _F.TYPE_MESSAGE, type_name=".caffe.V0LayerParameter")

    m = fdp.message_type.add(name="V0LayerParameter")
    _field(m, "name", 1, _F.TYPE_STRING)
    _field(m, "type", 2, _F.TYPE_STRING)
    _field(m, "blobs", 50, _F.TYPE_MESSAGE, _REPEATED, ".caffe.BlobProto")

    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_build_file())


def _cls(name: str) -> type:
    cls: type = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"caffe.{name}"))
    return cls


BlobShape = _cls("BlobShape")
BlobProto = _cls("BlobProto")
Datum = _cls("Datum")
NetParameter = _cls("NetParameter")
LayerParameter = _cls("LayerParameter")
V1LayerParameter = _cls("V1LayerParameter")
V0LayerParameter = _cls("V0LayerParameter")
