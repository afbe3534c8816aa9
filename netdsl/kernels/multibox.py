"""MultiBoxLoss (SSD's Caffe, weiliu89/caffe: multibox_loss_layer.cpp, and bbox_util.cpp's
GetGroundTruth, MatchBBox, FindMatches, MineHardExamples, EncodeLocPrediction,
EncodeConfPrediction), for a whole batch at once.

Matching and mining choose which priors count and are not differentiated; the loss on
the chosen ones is, and autograd's gradient is Caffe's Backward_cpu (SmoothL1Loss's,
EuclideanLoss's, SoftmaxWithLoss's or SigmoidCrossEntropyLoss's, scaled by 1 /
normaliser), including its two quirks: the softmax gradient ignores the FLT_MIN clamp,
and with encode_variance_in_target the location gradient is not divided by the variance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..caffe_math import FLT_MIN
from .detection import decode_boxes, encode_boxes, jaccard, rank_descending

__all__ = ["match_priors", "multibox_loss"]

_NEG_LOG_FLT_MIN = -math.log(FLT_MIN)


def _cross_boundary(b: Tensor) -> Tensor:
    """IsCrossBoundaryBBox: some coordinate outside [0, 1]."""
    return ((b < 0) | (b > 1)).any(dim=-1)


def match_priors(boxes: Tensor, gt: Tensor, gt_valid: Tensor, match_type: str,
                 overlap_threshold: float, ignore_cross_boundary_bbox: bool
                 ) -> tuple[Tensor, Tensor]:
    """MatchBBox for each image: ``boxes`` N x P x 4 (priors or decoded predictions),
    ``gt`` G x 4, ``gt_valid`` N x G (the image's own boxes). Returns the matched box of
    each prior (N x P; -1 none, -2 crossing the border when ignored) and its largest
    overlap with the image's boxes (0 if none above 1e-6), which mining reads.

    Bipartite first: repeatedly the largest overlap among unmatched priors and boxes
    not yet taken, first in (prior, box) order on ties; then, for PER_PREDICTION, each
    unmatched prior takes its best box if the overlap reaches the threshold.
    """
    n, p, _ = boxes.shape
    g = gt.shape[0]
    overlap = jaccard(boxes, gt.expand(n, g, 4))
    usable = gt_valid[:, None, :] & (overlap > 1e-6)
    match = torch.full((n, p), -1, dtype=torch.long, device=boxes.device)
    if ignore_cross_boundary_bbox:
        cross = _cross_boundary(boxes)
        usable &= ~cross[..., None]
        match = torch.where(cross, torch.full_like(match, -2), match)
    overlap = torch.where(usable, overlap, torch.zeros_like(overlap))
    best = (overlap.max(dim=-1).values if g
            else torch.zeros((n, p), dtype=boxes.dtype, device=boxes.device))
    pool = gt_valid.clone()
    img = torch.arange(n, device=boxes.device)
    minus_one = torch.full_like(overlap, -1.0)
    for _ in range(g):
        cand = usable & (match == -1)[..., None] & pool[:, None, :]
        score = torch.where(cand, overlap, minus_one).reshape(n, p * g)
        flat = score.argmax(dim=1)  # the first maximum
        found = score.gather(1, flat[:, None]).squeeze(1) > -1
        prior, box = flat // g, flat % g
        match[img, prior] = torch.where(found, box, match[img, prior])
        pool[img, box] &= ~found
    if match_type == "PER_PREDICTION" and g:
        cand = usable & (overlap >= overlap_threshold) & (match == -1)[..., None]
        score = torch.where(cand, overlap, minus_one)
        box = score.argmax(dim=-1)
        found = score.gather(-1, box[..., None]).squeeze(-1) > -1
        match = torch.where(found, box, match)
    return match, best


def _smooth_l1(d: Tensor) -> Tensor:
    a = d.abs()
    return torch.where(a < 1, 0.5 * d * d, a - 0.5)


def _logistic(x: Tensor, target: Tensor) -> Tensor:
    """SigmoidCrossEntropyLoss's per-entry loss, in its stable form."""
    pos = (x >= 0).to(x.dtype)
    return -(x * (target - pos) - torch.log(1 + torch.exp(x - 2 * x * pos)))


def _softmax_nll(conf: Tensor, label: Tensor) -> Tensor:
    """-log(max(p_label, FLT_MIN)) with the gradient p - onehot (Caffe's, clamp ignored)."""
    nll = -F.log_softmax(conf, dim=-1).gather(-1, label[..., None]).squeeze(-1)
    return nll - (nll - nll.clamp(max=_NEG_LOG_FLT_MIN)).detach()


def multibox_loss(loc: Tensor, conf: Tensor, prior: Tensor, gt: Tensor, *, num_priors: int,
                  num_classes: int, share_location: bool, background_label_id: int,
                  use_difficult_gt: bool, match_type: str, overlap_threshold: float,
                  use_prior_for_matching: bool, ignore_cross_boundary_bbox: bool,
                  code_type: str, encode_variance_in_target: bool, bp_inside: bool,
                  mining: bool, neg_pos_ratio: float, neg_overlap: float,
                  map_object_to_agnostic: bool, loc_loss_type: str, conf_loss_type: str,
                  loc_weight: float, normalization: str) -> Tensor:
    """MultiBoxLossLayer::Forward_cpu (mining NONE or MAX_NEGATIVE without NMS): a 0-d
    loss, (loc_weight x loc loss + conf loss) / normaliser."""
    n, p, c = loc.shape[0], num_priors, num_classes
    loc_classes = 1 if share_location else c
    flat = prior.detach().reshape(-1)
    prior_box = flat[: p * 4].reshape(p, 4)
    prior_var = flat[p * 4: p * 8].reshape(p, 4)
    locs = loc.reshape(n, p, loc_classes, 4)
    confs = conf.reshape(n, p, c)
    bg = background_label_id

    # GetGroundTruth: rows [item, label, instance, xmin, ymin, xmax, ymax, difficult];
    # Caffe reads bottom[3]->height() of them.
    rows = gt.detach().reshape(-1)
    g = gt.shape[2] if gt.dim() >= 3 else 1
    rows = rows[: g * 8].reshape(g, 8)
    gt_box, gt_label = rows[:, 3:7], rows[:, 1].long()
    gt_valid = rows[:, 0].long()[None, :] == torch.arange(n, device=loc.device)[:, None]
    if not use_difficult_gt:
        gt_valid &= (rows[:, 7] == 0)[None, :]
    has_gt = gt_valid.any(dim=1)

    with torch.no_grad():  # FindMatches
        if use_prior_for_matching:
            targets = prior_box.expand(n, p, 4)
        else:  # share_location (the layer refuses the per-class case)
            targets = decode_boxes(locs[:, :, 0], prior_box, prior_var, code_type,
                                   encode_variance_in_target)
        match, best = match_priors(targets, gt_box, gt_valid, match_type, overlap_threshold,
                                   ignore_cross_boundary_bbox)
    matched = match.clamp(min=0)
    label = gt_label[matched]  # N x P
    pos = match > -1
    if not share_location:  # a prior counts for the class of its box, if it has one
        pos &= (label >= 0) & (label < c) & (label != bg)
    num_matches = pos.sum()

    # Localisation: EncodeLocPrediction, then SmoothL1Loss or EuclideanLoss (sum / 1).
    loc_class = torch.zeros_like(label) if share_location else label.clamp(0, c - 1)
    pred = locs.gather(2, loc_class[..., None, None].expand(n, p, 1, 4)).squeeze(2)
    target = encode_boxes(gt_box[matched], prior_box, prior_var, code_type,
                          encode_variance_in_target)
    target = torch.where(pos[..., None], target, torch.zeros_like(target))
    if bp_inside:
        where = targets if use_prior_for_matching else decode_boxes(
            pred.detach(), prior_box, prior_var, code_type, encode_variance_in_target)
        pred = torch.where((where < 0) | (where > 1), target, pred)
    if encode_variance_in_target:  # Caffe scales the values but copies the gradient as is
        pred = pred + (pred / prior_var - pred).detach()
        target = target / prior_var
    diff = torch.where(pos[..., None], pred - target, torch.zeros_like(pred))
    loc_loss = (_smooth_l1(diff) if loc_loss_type == "SMOOTH_L1" else 0.5 * diff * diff).sum()

    # Confidence: MineHardExamples (MAX_NEGATIVE), EncodeConfPrediction, then the
    # SoftmaxWithLoss (normalization NONE) or SigmoidCrossEntropyLoss (1 row of them).
    cls = torch.full_like(label, bg + 1) if map_object_to_agnostic else label
    conf_label = torch.where(pos, cls, torch.full_like(cls, bg))
    logistic = conf_loss_type == "LOGISTIC"
    neg = torch.zeros_like(pos)
    if mining:
        with torch.no_grad():
            background = torch.full_like(label, bg)
            if logistic:
                hot = F.one_hot(background.clamp(0, c - 1), c).to(confs.dtype)
                hot = hot * float(0 <= bg < c)
                mine = _logistic(confs, hot).sum(dim=-1)
            else:
                mine = _softmax_nll(confs, background)
            eligible = (match == -1) & (best < neg_overlap) & has_gt[:, None]
            ratio = torch.tensor(neg_pos_ratio, dtype=torch.float32, device=loc.device)
            wanted = (pos.sum(dim=1).to(torch.float32) * ratio).long()  # static_cast<int>
            num_sel = torch.minimum(wanted, eligible.sum(dim=1))
            key = torch.where(eligible, mine, torch.full_like(mine, float("-inf")))
            neg = eligible & (rank_descending(key) < num_sel[:, None])
        counted = pos | neg
    else:
        counted = torch.ones_like(pos)
    if logistic:
        t = torch.full_like(confs, float(bg))  # Caffe fills conf_gt with the background id
        hot = F.one_hot(conf_label.clamp(0, c - 1), c).bool()
        t = torch.where(pos[..., None] & hot, torch.ones_like(t), t)
        if 0 <= bg < c:
            t = torch.where(neg[..., None] & hot, torch.ones_like(t), t)
        conf_loss = torch.where(counted[..., None], _logistic(confs, t),
                                torch.zeros_like(t)).sum()
    else:
        nll = _softmax_nll(confs, conf_label.clamp(0, c - 1))
        conf_loss = torch.where(counted, nll, torch.zeros_like(nll)).sum()

    # LossLayer::GetNormalizer with valid_count = the matches, at least 1.
    if normalization == "VALID":
        norm = num_matches.to(loc.dtype).clamp(min=1.0)
    else:
        norm = torch.tensor(float(max(1, {"FULL": n * p, "BATCH_SIZE": n, "NONE": 1}[
            normalization])), dtype=loc.dtype, device=loc.device)
    return (loc_weight * loc_loss + conf_loss) / norm
