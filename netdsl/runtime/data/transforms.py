"""Image transforms: resize, crops, mirror, mean subtraction, scale, channels, PCA lighting.

Every transform is a small frozen dataclass with two entry points:

* ``t.batch(x, rng)`` -- the implementation, on a torch batch ``(N, C, H, W)`` on the CPU,
  vectorised over the batch; random transforms draw all their numbers for the batch at
  once from the numpy Generator ``rng`` (the loader's, so runs are reproducible);
* ``t(x, rng)`` -- the same on one ``(C, H, W)`` numpy array (a batch of one).

Order and meaning follow Caffe's ``DataTransformer``: the output pixel is
``(x[c, h_off + h, w_off + w'] - mean[c, h_off + h, w_off + w']) * scale`` where ``w'`` is
``w`` or ``crop - 1 - w`` when mirrored. So the mean (a per-channel value or a whole mean
image of the uncropped size) is taken at the *source* pixel, and scale applies after the
mean is subtracted; subtracting a mean image before cropping gives exactly that.
Resizing happens before all of it (Caffe's ImageData ``new_height``/``new_width``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_EIGVAL",
    "IMAGENET_EIGVEC",
    "CenterCrop",
    "Mirror",
    "PCALighting",
    "RandomCrop",
    "ReplicateChannels",
    "Resize",
    "Scale",
    "SubtractMean",
    "TenCrop",
    "Transform",
    "crop_offsets",
    "ten_crop_offsets",
    "to_tensor",
]

Rng = np.random.Generator | None

#: Eigenvalues of the covariance of ImageNet's RGB pixels (0..1 scale), largest first, as
#: published with fb.resnet.torch and used throughout the literature.
IMAGENET_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
#: The matching eigenvectors, one per *column* (column 0 ~ (1, 1, 1)/sqrt(3): brightness).
#: Rows are the R, G, B channels.
IMAGENET_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _need_rng(rng: Rng, what: str) -> np.random.Generator:
    if rng is None:
        raise ValueError(f"{what} is random: pass a numpy Generator")
    return rng


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """A numpy array as a CPU tensor, sharing memory unless it must copy (read-only arrays)."""
    a = np.ascontiguousarray(x)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


class Transform:
    """Base of the transforms: ``__call__`` on one numpy image runs ``batch`` on a batch of 1."""

    #: Whether the transform draws random numbers (the loader caches only what precedes them).
    random: ClassVar[bool] = False

    def batch(self, x: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, rng: Rng = None) -> np.ndarray:
        return self.batch(to_tensor(x)[None], rng)[0].numpy()


@dataclass(frozen=True)
class Resize(Transform):
    """Bilinear resize: ``(S,)`` scales the shorter side to S, ``(H, W)`` gives exactly H x W.

    With ``(S,)`` the longer side becomes ``int(S * long / short)`` (torchvision's rule), so
    the aspect ratio is kept. Sampling is ``align_corners=False`` without antialiasing, as
    OpenCV's ``INTER_LINEAR`` that Caffe uses; ``antialias=True`` gives Pillow's filter.
    uint8 images stay uint8 (rounded), as with OpenCV.
    """

    size: tuple[int, ...]
    antialias: bool = False

    def __post_init__(self) -> None:
        if len(self.size) not in (1, 2) or min(self.size) < 1:
            raise ValueError(f"resize takes [S] or [H, W] with positive sizes, got {self.size}")

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        if len(self.size) == 2:
            return self.size[0], self.size[1]
        s = self.size[0]
        if h <= w:
            return s, int(s * w / h)
        return int(s * h / w), s

    def batch(self, x: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        size = self.out_size(x.shape[-2], x.shape[-1])
        if size == tuple(x.shape[-2:]):
            return x
        y = F.interpolate(
            x.float(), size=size, mode="bilinear", align_corners=False, antialias=self.antialias
        )
        if x.dtype == torch.uint8:
            return y.round_().clamp_(0, 255).to(torch.uint8)
        return y.to(x.dtype)


@dataclass(frozen=True)
class ReplicateChannels(Transform):
    """Repeat a one-channel image ``channels`` times (grey digits on a colour net)."""

    channels: int = 3

    def batch(self, x: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        c = x.shape[1]
        if c == self.channels:
            return x
        if c != 1:
            raise ValueError(f"cannot replicate {c} channels to {self.channels}")
        return x.expand(x.shape[0], self.channels, *x.shape[2:]).contiguous()


@dataclass(frozen=True, eq=False)
class SubtractMean(Transform):
    """Subtract per-channel values (Caffe's ``mean_value``) or a ``(C, H, W)`` mean image.

    One value is subtracted from every channel, as Caffe allows. A mean image must have the
    size of the image it is subtracted from (the uncropped one, as Caffe's ``mean_file``).
    The result is float32.
    """

    values: tuple[float, ...] = ()
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (not self.values) == (self.image is None):
            raise ValueError("give either mean values or a mean image")
        if self.image is not None and self.image.ndim != 3:
            raise ValueError(f"a mean image is (C, H, W), got shape {self.image.shape}")

    def mean_tensor(self, channels: int, device: torch.device | None = None) -> torch.Tensor:
        """The mean as a float32 tensor broadcasting over ``(C, H, W)``, on ``device``
        (made once per device: a mean image is copied to a GPU once, not per batch)."""
        key = (channels, str(device or "cpu"))
        cache = self.__dict__.setdefault("_on_device", {})
        if key not in cache:
            if self.image is not None:
                t = to_tensor(self.image.astype(np.float32, copy=False))
            else:
                if len(self.values) not in (1, channels):
                    raise ValueError(f"{len(self.values)} mean values for {channels} channels")
                t = torch.tensor(self.values, dtype=torch.float32).expand(channels)[:, None, None]
            cache[key] = t.to(device) if device is not None else t
        out: torch.Tensor = cache[key]
        return out

    def batch(self, x: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        mean = self.mean_tensor(x.shape[1], x.device)
        if self.image is not None and tuple(mean.shape) != tuple(x.shape[1:]):
            raise ValueError(
                f"the mean image is {tuple(mean.shape)}, the image {tuple(x.shape[1:])}"
            )
        return x.float() - mean


@dataclass(frozen=True)
class Scale(Transform):
    """Multiply by ``factor`` (Caffe's ``scale``, applied after mean subtraction)."""

    factor: float

    def batch(self, x: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        return x.float() * self.factor


def crop_offsets(
    u: np.ndarray, sizes: Sequence[tuple[int, int]], crop: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Random crop offsets, uniform as Caffe's ``h_off ~ U{0..H-h}``, ``w_off ~ U{0..W-w}``,
    from draws ``u`` (2, N) in [0, 1): ``floor(u * (H - h + 1))``.

    The draws do not depend on the image sizes, so a whole global batch's can be drawn
    before its images are read, and each process of a data-parallel run take its part.
    """
    hs = np.array([s[0] for s in sizes]) - crop[0]
    ws = np.array([s[1] for s in sizes]) - crop[1]
    if (hs < 0).any() or (ws < 0).any():
        raise ValueError(f"an image is smaller than the {crop[0]}x{crop[1]} crop")
    return ((u[0] * (hs + 1)).astype(np.int64), (u[1] * (ws + 1)).astype(np.int64))


def _gather_crops(
    x: torch.Tensor | Sequence[torch.Tensor],
    h_off: np.ndarray,
    w_off: np.ndarray,
    crop: tuple[int, int],
) -> torch.Tensor:
    h, w = crop
    if isinstance(x, torch.Tensor):
        if x.shape[-2:] == crop:
            return x
        if len(np.unique(h_off)) == 1 and len(np.unique(w_off)) == 1:  # e.g. centre crops
            a, b = int(h_off[0]), int(w_off[0])
            return x[:, :, a : a + h, b : b + w].contiguous()
        if x.device.type != "cpu":  # one gather kernel, not a kernel per image
            dev = x.device
            n = torch.arange(x.shape[0], device=dev)[:, None, None]
            rows = (torch.from_numpy(h_off).to(dev)[:, None, None]
                    + torch.arange(h, device=dev)[None, :, None])
            cols = (torch.from_numpy(w_off).to(dev)[:, None, None]
                    + torch.arange(w, device=dev)[None, None, :])
            # advanced indices around a slice: the result is (N, h, w, C)
            return x[n, :, rows, cols].permute(0, 3, 1, 2).contiguous()
    # on the CPU a slice per image and one stack beat a gather 20x (AlexNet's 227 crops)
    return torch.stack(
        [
            xi[:, a : a + h, b : b + w]
            for xi, a, b in zip(x, h_off.tolist(), w_off.tolist(), strict=True)
        ]
    )


def _sizes(x: torch.Tensor | Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    if isinstance(x, torch.Tensor):
        return [(x.shape[-2], x.shape[-1])] * x.shape[0]
    return [(xi.shape[-2], xi.shape[-1]) for xi in x]


@dataclass(frozen=True)
class RandomCrop(Transform):
    """A ``size`` (h, w) window at a uniformly random position (Caffe's TRAIN crop).

    ``batch`` also takes a list of ``(C, H, W)`` tensors of different sizes (images resized
    by their shorter side) and returns the stacked crops.
    """

    size: tuple[int, int]
    random: ClassVar[bool] = True

    def draw(self, rng: Rng, n: int) -> np.ndarray:
        """The numbers ``n`` crops are made from: (2, n) uniform in [0, 1)."""
        return _need_rng(rng, "RandomCrop").random((2, n))

    def apply(self, x: torch.Tensor | Sequence[torch.Tensor], u: np.ndarray) -> torch.Tensor:
        h_off, w_off = crop_offsets(u, _sizes(x), self.size)
        return _gather_crops(x, h_off, w_off, self.size)

    def batch(self, x: torch.Tensor | Sequence[torch.Tensor], rng: Rng = None) -> torch.Tensor:
        return self.apply(x, self.draw(rng, len(x)))


@dataclass(frozen=True)
class CenterCrop(Transform):
    """The centre ``size`` (h, w) window, offsets ``((H - h) // 2, (W - w) // 2)`` as Caffe."""

    size: tuple[int, int]

    def batch(self, x: torch.Tensor | Sequence[torch.Tensor], rng: Rng = None) -> torch.Tensor:
        sizes = _sizes(x)
        h_off = np.array([(s[0] - self.size[0]) // 2 for s in sizes])
        w_off = np.array([(s[1] - self.size[1]) // 2 for s in sizes])
        if (h_off < 0).any() or (w_off < 0).any():
            raise ValueError(f"an image is smaller than the {self.size} crop")
        return _gather_crops(x, h_off, w_off, self.size)


@dataclass(frozen=True)
class Mirror(Transform):
    """Flip left-right with probability ``p``: one ``rng.random(N) < p`` draw per batch."""

    p: float = 0.5
    random: ClassVar[bool] = True

    def draw(self, rng: Rng, n: int) -> np.ndarray:
        return _need_rng(rng, "Mirror").random(n) < self.p

    def batch(self, x: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        return self.apply(x, self.draw(rng, x.shape[0]))

    def apply(self, x: torch.Tensor, flip: np.ndarray) -> torch.Tensor:
        if not flip.any():
            return x
        which = torch.from_numpy(np.flatnonzero(flip)).to(x.device)
        out = x.clone()
        out[which] = x[which].flip(-1)
        return out


@dataclass(frozen=True)
class PCALighting(Transform):
    """AlexNet's colour noise (Krizhevsky et al. 2012, section 4.1).

    For each image, draw ``alpha ~ N(0, std)`` (3 numbers, ``rng.normal(0, std, (N, 3))``
    for a batch) and add ``eigvec @ (alpha * eigval)`` -- that is
    ``sum_i alpha_i * lambda_i * p_i`` with ``p_i`` the i-th *column* of ``eigvec`` -- to
    every pixel. The eigen-decomposition is of 0..1 RGB pixels; ``pixel_scale`` converts
    the noise to the units of the data (``pixel_max * scale``: 255 for uint8 images,
    times Caffe's ``scale`` if the data has been scaled), and ``bgr`` says the channels are
    in BGR order (the noise vector is reversed to match).
    """

    std: float = 0.1
    eigval: tuple[float, ...] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC
    pixel_scale: float = 1.0
    bgr: bool = False
    random: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if len(self.eigval) != 3 or len(self.eigvec) != 3 or any(len(r) != 3 for r in self.eigvec):
            raise ValueError("PCA lighting needs 3 eigenvalues and a 3x3 eigenvector matrix")

    def noise(self, alpha: np.ndarray) -> np.ndarray:
        """The per-channel offsets ``(N, 3)`` for draws ``alpha`` ``(N, 3)``, in data units."""
        vec = np.asarray(self.eigvec, dtype=np.float64)
        val = np.asarray(self.eigval, dtype=np.float64)
        delta = (alpha * val) @ vec.T * self.pixel_scale
        return delta[:, ::-1] if self.bgr else delta

    def draw(self, rng: Rng, n: int) -> np.ndarray:
        """The ``alpha`` draws for ``n`` images: (n, 3) from N(0, std)."""
        return _need_rng(rng, "PCALighting").normal(0.0, self.std, size=(n, 3))

    def delta(self, alpha: np.ndarray, device: torch.device) -> torch.Tensor:
        """The ``(n, 3, 1, 1)`` float32 offsets for draws ``alpha``, on ``device``."""
        delta = torch.from_numpy(np.ascontiguousarray(self.noise(alpha), dtype=np.float32))
        return delta.to(device)[:, :, None, None]

    def batch(self, x: torch.Tensor, rng: Rng = None) -> torch.Tensor:
        if x.shape[1] != 3:
            raise ValueError(f"PCA lighting needs 3 channels, the images have {x.shape[1]}")
        return x.float() + self.delta(self.draw(rng, x.shape[0]), x.device)


def ten_crop_offsets(hw: tuple[int, int], crop: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners of the 5 crops: top-left, top-right, bottom-left, bottom-right, centre.

    The order of pycaffe's ``caffe.io.oversample``; the centre is Caffe's centre crop.
    """
    (H, W), (h, w) = hw, crop
    if H < h or W < w:
        raise ValueError(f"a {H}x{W} image is smaller than the {h}x{w} crop")
    return [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), ((H - h) // 2, (W - w) // 2)]


@dataclass(frozen=True)
class TenCrop(Transform):
    """10-crop testing: the 4 corner and centre crops, then the mirror of each of those 5
    (``mirror``; without, the 5 crops only: a net trained without mirroring never saw a
    mirrored image).

    ``batch`` maps ``(N, C, H, W)`` (or a list of differently sized images) to
    ``(N * 10, C, h, w)``, the 10 crops of image ``n`` at rows ``10n .. 10n + 9``: run the
    net on all of them and average each image's 10 outputs (``average_crops``). Calling it
    on one image gives its ``(10, C, h, w)`` crops. (5 for 10 without ``mirror``.)
    """

    size: tuple[int, int]
    mirror: bool = True

    @property
    def crops(self) -> int:
        """The views of each image: 10, or 5 without the mirrors."""
        return 10 if self.mirror else 5

    def batch(self, x: torch.Tensor | Sequence[torch.Tensor], rng: Rng = None) -> torch.Tensor:
        h, w = self.size
        images = list(x) if not isinstance(x, torch.Tensor) else x.unbind(0)
        out = []
        for xi in images:
            five = [
                xi[:, a : a + h, b : b + w]
                for a, b in ten_crop_offsets((xi.shape[-2], xi.shape[-1]), self.size)
            ]
            five_t = torch.stack(five)
            out.append(torch.cat([five_t, five_t.flip(-1)]) if self.mirror else five_t)
        return torch.cat(out) if out else torch.empty(0)

    def __call__(self, x: np.ndarray, rng: Rng = None) -> np.ndarray:
        return self.batch(to_tensor(x)[None], rng).numpy()


@dataclass(frozen=True, eq=False)
class Pipeline:
    """A phase's transforms in Caffe's order, split for the loader into two stages.

    :meth:`prefix` (resize, channel replication) is deterministic and per image, so the
    loader may cache its output; :meth:`finish` does the rest on a whole batch:
    mean image, crop (random, centre or ten), mirror, then float32, mean values, scale
    and lighting. The random numbers are drawn first, for the whole batch, in that
    order: crop positions (2N uniforms), flips (N), lighting (N x 3 normals).
    """

    resize: Resize | None = None
    replicate: ReplicateChannels | None = None
    mean: SubtractMean | None = None
    scale: float = 1.0
    crop: RandomCrop | CenterCrop | TenCrop | None = None
    mirror: Mirror | None = None
    lighting: PCALighting | None = None

    @property
    def crops(self) -> int:
        """How many outputs each image gives: 10 (or 5 unmirrored) with TenCrop, else 1."""
        return self.crop.crops if isinstance(self.crop, TenCrop) else 1

    @property
    def crop_size(self) -> tuple[int, int] | None:
        return self.crop.size if self.crop is not None else None

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The cacheable stage on a batch ``(N, C, H, W)``: resize, replicate channels."""
        if self.resize is not None:
            x = self.resize.batch(x)
        if self.replicate is not None:
            x = self.replicate.batch(x)
        return x

    def finish(self, x: torch.Tensor | Sequence[torch.Tensor], rng: Rng = None,
               device: torch.device | None = None,
               part: tuple[int, int] | None = None) -> torch.Tensor:
        """The batch stage: from prefix outputs (stacked, or a list if sizes differ).

        With ``device``, the batch crosses to it as it is (uint8 at the stored size: the
        fewest bytes; non-blocking from pinned memory) and every step runs there. The
        random numbers are drawn on the host in the same order either way, so the device
        makes the same crops, flips and lighting as the CPU.

        ``part = (start, total)``: ``x`` holds images ``start .. start + len(x)`` of a
        global batch of ``total`` (one process's share in data-parallel training): the
        numbers are drawn for all ``total``, in order, and this part's are used, so the
        processes together make what one process with the whole batch would.
        """
        n = len(x)
        start, total = part if part is not None else (0, n)
        crop_u = (self.crop.draw(rng, total)[:, start:start + n]
                  if isinstance(self.crop, RandomCrop) else None)
        flips = self.mirror.draw(rng, total)[start:start + n] if self.mirror else None
        alpha = self.lighting.draw(rng, total)[start:start + n] if self.lighting else None
        if device is not None:
            if isinstance(x, torch.Tensor):
                x = x.to(device, non_blocking=x.is_pinned())
            else:
                x = [xi.to(device, non_blocking=xi.is_pinned()) for xi in x]
        mean = self.mean
        if mean is not None and mean.image is not None:
            if not isinstance(x, torch.Tensor):
                raise ValueError("a mean image needs all images to have its size")
            x = mean.batch(x)
            mean = None
        if crop_u is not None:
            x = self.crop.apply(x, crop_u)  # type: ignore[union-attr]  # a RandomCrop here
        elif self.crop is not None:
            x = self.crop.batch(x, rng)
        elif not isinstance(x, torch.Tensor):
            x = torch.stack(list(x))
        if flips is not None and self.mirror is not None:  # on the narrow pixels: it
            x = self.mirror.apply(x, flips)  # commutes with the arithmetic below
        if self.lighting is not None and x.shape[1] != 3:
            raise ValueError(f"PCA lighting needs 3 channels, the images have {x.shape[1]}")
        # Caffe's (x - mean) * scale, then the lighting; the first step makes a new
        # tensor (x may be a view of cached data), the rest work in place on it
        if mean is not None:
            x = x.float() - mean.mean_tensor(x.shape[1], x.device)
        else:
            x = x.to(torch.float32, copy=True)
        if self.scale != 1.0:
            x.mul_(self.scale)
        if alpha is not None and self.lighting is not None:
            x.add_(self.lighting.delta(alpha, x.device))
        return x.contiguous()

    def __call__(self, x: np.ndarray, rng: Rng = None) -> np.ndarray:
        """The whole pipeline on one ``(C, H, W)`` image: ``(C, h, w)``, or ``(10, C, h, w)``."""
        out = self.finish(self.prefix(to_tensor(x)[None]), rng)
        return out.numpy() if self.crops > 1 else out[0].numpy()
