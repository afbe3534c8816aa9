"""The training runtime's data: sources, transforms, a resumable loader, and the pipeline
a data config (``netdsl.sections.DataConfig``) builds from them.

Typical use::

    loader = build_loader(DataConfig(source="digits"), "train", (1, 28, 28), seed=0)
    data, label = loader.next_batch()      # float32 (64, 1, 28, 28), int64 (64,)
    saved = loader.state()                 # JSON-ready; loader.load_state(saved) resumes
"""

from __future__ import annotations

from .base import IMAGE_EXTENSIONS, SampleSource, Source, read_image
from .caffe_lmdb import LmdbSource, decode_datum
from .digits import DigitsSource
from .feeder import Feeder
from .folder import FolderSource
from .labels import LabelRange, check_labels
from .listfile import ListSource
from .loader import Loader, average_crops
from .pipeline import build_loader, load_mean_file, resolve_workers
from .sources import SOURCES, SourceKind, make_source, open_source
from .synthetic import SyntheticSource
from .transforms import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    CenterCrop,
    Mirror,
    PCALighting,
    Pipeline,
    RandomCrop,
    ReplicateChannels,
    Resize,
    Scale,
    SubtractMean,
    TenCrop,
    Transform,
)

__all__ = [
    "IMAGENET_EIGVAL",
    "IMAGENET_EIGVEC",
    "IMAGE_EXTENSIONS",
    "SOURCES",
    "CenterCrop",
    "DigitsSource",
    "Feeder",
    "FolderSource",
    "ListSource",
    "LmdbSource",
    "LabelRange",
    "Loader",
    "Mirror",
    "PCALighting",
    "Pipeline",
    "RandomCrop",
    "ReplicateChannels",
    "Resize",
    "SampleSource",
    "SourceKind",
    "Scale",
    "Source",
    "SubtractMean",
    "SyntheticSource",
    "TenCrop",
    "Transform",
    "average_crops",
    "build_loader",
    "check_labels",
    "decode_datum",
    "load_mean_file",
    "make_source",
    "open_source",
    "read_image",
    "resolve_workers",
]
