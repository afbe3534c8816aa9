"""Kernels of the detection fork layers, each as its fork's C++ computes it.

SSD's Caffe (weiliu89/caffe, branch ssd): Permute (permute_layer.cpp), PriorBox
(prior_box_layer.cpp), Normalize (normalize_layer.cpp), DetectionOutput
(detection_output_layer.cpp), DetectionEvaluate (detection_evaluate_layer.cpp) and the
box arithmetic of src/caffe/util/bbox_util.cpp (BBoxSize, JaccardOverlap, EncodeBBox,
DecodeBBox, ApplyNMSFast) that MultiBoxLoss (``multibox.py``) shares. Fast R-CNN's Caffe
(rbgirshick/caffe-fast-rcnn): ROIPooling (roi_pooling_layer.cpp, .cu).

Where Caffe walks boxes one by one, these work on whole batches: a greedy NMS is one
loop over the top_k candidates of every (image, class) at once. No torchvision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .convolution import empty_param

__all__ = [
    "Normalize",
    "PriorBoxes",
    "bbox_size",
    "decode_boxes",
    "detection_evaluate",
    "detection_output",
    "encode_boxes",
    "jaccard",
    "nms_keep",
    "permute",
    "prior_boxes",
    "rank_descending",
    "roi_pool",
]


def permute(x: Tensor, order: Sequence[int]) -> Tensor:
    """PermuteLayer: the axes in ``order`` (a new, contiguous blob, as Caffe copies)."""
    return x.permute(*order).contiguous()


# --------------------------------------------------------------------------- PriorBox


def _f32(t: Tensor) -> Tensor:
    """Float64 values rounded to C floats (where Caffe keeps a float)."""
    return t.to(torch.float32).to(torch.float64)


def _c_float(x: float) -> float:
    return float(torch.tensor(x, dtype=torch.float32).item())


def prior_boxes(layer_hw: tuple[int, int], img_hw: tuple[int, int],
                step_hw: tuple[float, float], offset: float, min_sizes: Sequence[int],
                max_sizes: Sequence[int], aspect_ratios: Sequence[float], clip: bool,
                variance: Sequence[float]) -> Tensor:
    """PriorBoxLayer::Forward_cpu's top, 1 x 2 x (H*W*priors*4), in float64.

    Caffe computes the centres and box sides in C floats and each coordinate in double
    (``(center_x - box_width / 2.) / img_width``), then stores it in the blob: this
    returns those doubles, so that a cast to float32 gives Caffe's blob exactly.
    """
    lh, lw = layer_hw
    ih, iw = img_hw
    d = torch.float64
    cx = _f32(_f32(torch.arange(lw, dtype=d) + offset) * step_hw[1])
    cy = _f32(_f32(torch.arange(lh, dtype=d) + offset) * step_hw[0])
    sides: list[tuple[float, float]] = []
    for s, m in enumerate(min_sizes):
        sides.append((float(m), float(m)))
        if max_sizes:
            side = _c_float(math.sqrt(m * max_sizes[s]))  # int product, as in Caffe
            sides.append((side, side))
        for ar in aspect_ratios:
            if abs(ar - 1.0) < 1e-6:
                continue
            sides.append((_c_float(m * math.sqrt(ar)), _c_float(m / math.sqrt(ar))))
    bw = torch.tensor([w for w, _ in sides], dtype=d)
    bh = torch.tensor([h for _, h in sides], dtype=d)
    shape = (lh, lw, len(sides))
    xmin = ((cx[None, :, None] - bw / 2.0) / iw).expand(shape)
    ymin = ((cy[:, None, None] - bh / 2.0) / ih).expand(shape)
    xmax = ((cx[None, :, None] + bw / 2.0) / iw).expand(shape)
    ymax = ((cy[:, None, None] + bh / 2.0) / ih).expand(shape)
    boxes = torch.stack([xmin, ymin, xmax, ymax], dim=-1).reshape(-1)
    if clip:
        boxes = boxes.clamp(0.0, 1.0)
    var = torch.tensor(list(variance), dtype=d)
    var = var.repeat(boxes.numel() // 4) if var.numel() == 4 else var.expand(boxes.numel())
    return torch.stack([boxes, var]).unsqueeze(0)


class PriorBoxes(nn.Module):
    """PriorBox's kernel: the priors depend only on shapes, so they are made once (a
    buffer outside the state dict) and returned in the feature map's dtype."""

    priors: Tensor

    def __init__(self, layer_hw: tuple[int, int], img_hw: tuple[int, int],
                 step_hw: tuple[float, float], offset: float, min_sizes: Sequence[int],
                 max_sizes: Sequence[int], aspect_ratios: Sequence[float], clip: bool,
                 variance: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("priors", prior_boxes(layer_hw, img_hw, step_hw, offset, min_sizes,
                                                   max_sizes, aspect_ratios, clip, variance),
                             persistent=False)

    def forward(self, feature: Tensor, image: Tensor) -> Tensor:
        return self.priors.to(feature.dtype)


# --------------------------------------------------------------------------- Normalize


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale, None


class Normalize(nn.Module):
    """NormalizeLayer: x / sqrt(sum x^2 + eps) (over C x H x W, or over C per pixel),
    times the learned ``scale`` (a scalar, or one per channel).

    The gradient is Backward_cpu's: it takes the normalisation's Jacobian of the top's
    gradient and then multiplies by the scale, which is the true gradient for a shared
    scale but not for one per channel (SSD's conv4_3_norm trained with Caffe's).
    """

    def __init__(self, channels: int, across_spatial: bool, channel_shared: bool,
                 eps: float) -> None:
        super().__init__()
        self.channels, self.across_spatial, self.eps = channels, across_spatial, eps
        self.scale = empty_param(() if channel_shared else (channels,))

    def forward(self, x: Tensor) -> Tensor:
        v: Tensor = x.reshape(x.shape[0], self.channels, -1)
        scale = self.scale if self.scale.dim() == 0 else self.scale.reshape(1, -1, 1)
        v = _ScaleGradient.apply(v, scale.detach())  # type: ignore[no-untyped-call]  # untyped
        dims = (1, 2) if self.across_spatial else (1,)
        unit = v / ((v * v).sum(dims, keepdim=True) + self.eps).sqrt()
        # value unit * scale; the gradient reaches `unit` unscaled (scaled above instead)
        return (unit.detach() * scale + (unit - unit.detach())).reshape(x.shape)


# --------------------------------------------------------------------------- ROIPooling


def _round_half_away(t: Tensor) -> Tensor:
    """C's round(): halves away from zero (torch.round rounds them to even)."""
    return torch.sign(t) * torch.floor(t.abs() + 0.5)


def _bins(start: Tensor, end: Tensor, pooled: int, size: int, dtype: torch.dtype
          ) -> tuple[Tensor, Tensor]:
    """Each ROI's bins along one axis: [start, end) per pooled index, clipped to the map."""
    extent = (end - start + 1).clamp(min=1).to(dtype)
    bin_size = extent / pooled
    p = torch.arange(pooled, device=start.device, dtype=dtype)
    lo = torch.floor(p * bin_size[:, None]).long() + start[:, None]
    hi = torch.ceil((p + 1) * bin_size[:, None]).long() + start[:, None]
    return lo.clamp(0, size), hi.clamp(0, size)


def roi_pool(x: Tensor, rois: Tensor, chw: tuple[int, int, int], pooled_h: int, pooled_w: int,
             spatial_scale: float) -> Tensor:
    """ROIPoolingLayer: R x C x pooled_h x pooled_w, the max of each bin (0 if empty).

    The max is taken along width, then height, each keeping its first maximum, so the
    gradient reaches the first maximum in raster order: Caffe's argmax. An ROI whose
    corners are reversed gets no gradient, as in Caffe's ROIPoolBackward.
    """
    c, h, w = chw
    feats = x.reshape(x.shape[0], c, h, w)
    r = rois.reshape(rois.shape[0], -1)
    coords = _round_half_away(r[:, 1:5] * spatial_scale).long()
    sw, sh, ew, eh = coords.unbind(1)
    hs, he = _bins(sh, eh, pooled_h, h, x.dtype)
    ws, we = _bins(sw, ew, pooled_w, w, x.dtype)
    f = feats[r[:, 0].long()]  # int(batch index): truncation, as Caffe's cast
    neg = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    cols_w = torch.arange(w, device=x.device)
    cols = []
    for pw in range(pooled_w):
        inside = (cols_w >= ws[:, pw, None]) & (cols_w < we[:, pw, None])  # R x W
        cols.append(torch.where(inside[:, None, None, :], f, neg).max(dim=3).values)
    by_row = torch.stack(cols, dim=-1)  # R x C x H x pooled_w
    rows_h = torch.arange(h, device=x.device)
    outs = []
    for ph in range(pooled_h):
        inside = (rows_h >= hs[:, ph, None]) & (rows_h < he[:, ph, None])  # R x H
        outs.append(torch.where(inside[:, None, :, None], by_row, neg).max(dim=2).values)
    out = torch.stack(outs, dim=2)  # R x C x pooled_h x pooled_w
    empty = (he <= hs)[:, :, None] | (we <= ws)[:, None, :]
    out = torch.where(empty[:, None], torch.zeros_like(out), out)
    backprop = ((ew >= sw) & (eh >= sh))[:, None, None, None]
    return torch.where(backprop, out, out.detach())


# --------------------------------------------------------------------------- boxes


def bbox_size(b: Tensor) -> Tensor:
    """BBoxSize (normalized): width x height, 0 for a box with xmax < xmin or ymax < ymin."""
    w = b[..., 2] - b[..., 0]
    h = b[..., 3] - b[..., 1]
    return torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)


def jaccard(a: Tensor, b: Tensor) -> Tensor:
    """JaccardOverlap of every box of ``a`` (... x A x 4) with every box of ``b``
    (... x B x 4): ... x A x B, 0 where they do not overlap with positive area."""
    lo = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    hi = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    iw, ih = (hi - lo).unbind(-1)
    inter = iw * ih
    ok = (iw > 0) & (ih > 0)
    union = bbox_size(a)[..., :, None] + bbox_size(b)[..., None, :] - inter
    return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)),
                       torch.zeros_like(inter))


def _prior_geometry(prior: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    pw = prior[..., 2] - prior[..., 0]
    ph = prior[..., 3] - prior[..., 1]
    return pw, ph, (prior[..., 0] + prior[..., 2]) / 2.0, (prior[..., 1] + prior[..., 3]) / 2.0


def decode_boxes(loc: Tensor, prior: Tensor, var: Tensor, code_type: str,
                 variance_encoded_in_target: bool) -> Tensor:
    """DecodeBBox for every prediction (... x P x 4) against its prior (P x 4)."""
    v = torch.ones_like(var) if variance_encoded_in_target else var
    if code_type == "CORNER":
        return prior + v * loc
    pw, ph, pcx, pcy = _prior_geometry(prior)
    if code_type == "CORNER_SIZE":
        size = torch.stack([pw, ph, pw, ph], dim=-1)
        return prior + v * loc * size
    if code_type != "CENTER_SIZE":
        raise ValueError(f"unknown code_type {code_type!r}")
    cx = v[..., 0] * loc[..., 0] * pw + pcx
    cy = v[..., 1] * loc[..., 1] * ph + pcy
    w = torch.exp(v[..., 2] * loc[..., 2]) * pw
    h = torch.exp(v[..., 3] * loc[..., 3]) * ph
    return torch.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], dim=-1)


def encode_boxes(box: Tensor, prior: Tensor, var: Tensor, code_type: str,
                 encode_variance_in_target: bool) -> Tensor:
    """EncodeBBox of ground-truth boxes (... x P x 4) against their priors (P x 4)."""
    v = torch.ones_like(var) if encode_variance_in_target else var
    if code_type == "CORNER":
        return (box - prior) / v
    pw, ph, pcx, pcy = _prior_geometry(prior)
    if code_type == "CORNER_SIZE":
        size = torch.stack([pw, ph, pw, ph], dim=-1)
        return (box - prior) / size / v
    if code_type != "CENTER_SIZE":
        raise ValueError(f"unknown code_type {code_type!r}")
    bw = box[..., 2] - box[..., 0]
    bh = box[..., 3] - box[..., 1]
    bcx = (box[..., 0] + box[..., 2]) / 2.0
    bcy = (box[..., 1] + box[..., 3]) / 2.0
    return torch.stack([(bcx - pcx) / pw / v[..., 0], (bcy - pcy) / ph / v[..., 1],
                        torch.log(bw / pw) / v[..., 2], torch.log(bh / ph) / v[..., 3]], dim=-1)


def rank_descending(scores: Tensor) -> Tensor:
    """Each entry's place (0 = highest) in its row sorted by score, ties in index order
    (std::stable_sort with SortScorePairDescend)."""
    order = scores.sort(dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device
                                          ).expand_as(order).contiguous())
    return rank


# --------------------------------------------------------------------------- NMS


def nms_keep(boxes: Tensor, valid: Tensor, nms_threshold: float, eta: float) -> Tensor:
    """ApplyNMSFast on candidates already sorted by score: B x K boxes (B x K x 4), of
    which ``valid`` take part. A candidate is kept unless it overlaps a kept one by more
    than the threshold; with eta < 1 the threshold shrinks by eta after each kept box
    while above 0.5. One loop over K for all B sets at once."""
    k = boxes.shape[1]
    overlap = jaccard(boxes, boxes)
    keep = torch.zeros_like(valid)
    threshold = torch.full(valid.shape[:1], nms_threshold, dtype=boxes.dtype,
                           device=boxes.device)
    for i in range(k):
        suppressed = ((overlap[:, i, :i] > threshold[:, None]) & keep[:, :i]).any(dim=1)
        kept = valid[:, i] & ~suppressed
        keep[:, i] = kept
        if eta < 1:
            threshold = torch.where(kept & (threshold > 0.5), threshold * eta, threshold)
    return keep


def detection_output(loc: Tensor, conf: Tensor, prior: Tensor, *images: Tensor,
                     num_priors: int, num_classes: int, share_location: bool,
                     background_label_id: int, code_type: str,
                     variance_encoded_in_target: bool, nms_threshold: float, top_k: int,
                     eta: float, keep_top_k: int, confidence_threshold: float) -> Tensor:
    """DetectionOutputLayer::Forward_cpu: 1 x 1 x D x 7 rows [image, label, score, xmin,
    ymin, xmax, ymax], by image, label, then NMS order; one row [i, -1, ...] per image
    when nothing is found. D depends on the data (no backward, as in Caffe)."""
    with torch.no_grad():
        n, p, c = loc.shape[0], num_priors, num_classes
        flat = prior.reshape(-1)
        prior_box = flat[: p * 4].reshape(p, 4)
        prior_var = flat[p * 4: p * 8].reshape(p, 4)
        loc_classes = 1 if share_location else c
        locs = loc.reshape(n, p, loc_classes, 4).transpose(1, 2)
        boxes = decode_boxes(locs, prior_box, prior_var, code_type, variance_encoded_in_target)
        boxes = boxes.expand(n, c, p, 4)  # one box set per class (shared: the same one)
        scores = conf.reshape(n, p, c).transpose(1, 2)  # N x C x P
        candidate = scores > confidence_threshold
        masked = torch.where(candidate, scores, torch.full_like(scores, float("-inf")))
        k = p if top_k < 0 else min(top_k, p)
        order = masked.sort(dim=-1, descending=True, stable=True).indices[..., :k]
        top_scores = scores.gather(2, order)
        valid = candidate.gather(2, order)
        valid &= (torch.arange(c, device=loc.device) != background_label_id)[None, :, None]
        top_boxes = boxes.gather(2, order[..., None].expand(n, c, k, 4))
        keep = nms_keep(top_boxes.reshape(n * c, k, 4), valid.reshape(n * c, k),
                        nms_threshold, eta).reshape(n, c, k)
        if keep_top_k > -1:
            kept = torch.where(keep, top_scores, torch.full_like(top_scores, float("-inf")))
            keep &= rank_descending(kept.reshape(n, c * k)).reshape(n, c, k) < keep_top_k
        where = keep.nonzero()
        if where.shape[0] == 0:  # Caffe's "Couldn't find any detections"
            out = torch.full((n, 7), -1.0, dtype=loc.dtype, device=loc.device)
            out[:, 0] = torch.arange(n, dtype=loc.dtype, device=loc.device)
            return out.reshape(1, 1, n, 7)
        i, label, j = where.unbind(1)
        rows = torch.cat([i[:, None].to(loc.dtype), label[:, None].to(loc.dtype),
                          top_scores[i, label, j][:, None], top_boxes[i, label, j]], dim=1)
        return rows.reshape(1, 1, -1, 7)


def detection_evaluate(det: Tensor, gt: Tensor, *, num_classes: int, background_label_id: int,
                       overlap_threshold: float, evaluate_difficult_gt: bool) -> Tensor:
    """DetectionEvaluateLayer::Forward_cpu (normalised boxes): 1 x 1 x (classes + D) x 5.

    Rows [-1, class, positives, -1, -1] for each class but the background, then
    [image, label, score, tp, fp] per detection by image, label and score. A detection
    is a true positive when its best box (first on ties) of its image and label overlaps
    it by the threshold and no earlier detection took that box; one whose best box is
    difficult and not evaluated is (0, 0). As in Caffe, rows Reshape counted but Forward
    skipped (image -1) stay 0 at the end.
    """
    with torch.no_grad():
        d, g = det.reshape(-1, 7), gt.reshape(-1, 8)
        dev, dtype = det.device, det.dtype
        # GetGroundTruth (per image and label) stops at the first row of image -1
        g_item, g_label, g_difficult = g[:, 0].long(), g[:, 1].long(), g[:, 7] != 0
        g_valid = torch.cumprod((g_item != -1).long(), 0).bool()
        counted = g_valid & (~g_difficult if not evaluate_difficult_gt else True)
        classes = torch.tensor([c for c in range(num_classes) if c != background_label_id],
                               dtype=torch.long, device=dev)
        positives = (counted[None, :] & (g_label[None, :] == classes[:, None])).sum(1)
        minus = torch.full_like(classes, -1)
        head = torch.stack([minus, classes, positives, minus, minus], 1).to(dtype)

        item, label, score = d[:, 0].long(), d[:, 1].long(), d[:, 2]
        order = score.sort(descending=True, stable=True).indices
        order = order[label[order].sort(stable=True).indices]
        order = order[item[order].sort(stable=True).indices]
        order = order[((item != -1) & (label != -1))[order]]
        it, lb, s = item[order], label[order], score[order]
        same = ((it[:, None] == g_item[None, :]) & (lb[:, None] == g_label[None, :])
                & g_valid[None, :])
        overlap = torch.where(same, jaccard(d[order, 3:7], g[:, 3:7]),
                              torch.full(same.shape, -2.0, dtype=dtype, device=dev))
        best = overlap.argmax(dim=1)
        has_gt = same.any(dim=1)
        hit = has_gt & (overlap.gather(1, best[:, None]).squeeze(1) >= overlap_threshold)
        scored = hit & (~g_difficult[best] if not evaluate_difficult_gt else True)
        n = order.shape[0]
        earlier = torch.arange(n, device=dev)[None, :] < torch.arange(n, device=dev)[:, None]
        taken = (scored[None, :] & earlier & (best[None, :] == best[:, None])
                 & (it[None, :] == it[:, None]) & (lb[None, :] == lb[:, None])).any(dim=1)
        tp = scored & ~taken
        fp = ~hit | (scored & taken)
        rows = torch.stack([it.to(dtype), lb.to(dtype), s, tp.to(dtype), fp.to(dtype)], 1)
        spare = int((d[:, 1] != -1).sum()) - n  # Reshape's count minus the rows written
        out = torch.cat([head, rows, torch.zeros(spare, 5, dtype=dtype, device=dev)])
        return out.reshape(1, 1, -1, 5)
