"""Numpy transcriptions of SSD's Caffe (weiliu89/caffe, branch ssd), loop for loop:
src/caffe/util/bbox_util.cpp (BBoxSize, JaccardOverlap, EncodeBBox, DecodeBBox,
GetMaxScoreIndex, ApplyNMSFast, GetGroundTruth, MatchBBox, FindMatches,
MineHardExamples, EncodeLocPrediction, EncodeConfPrediction) and the Forward_cpu /
Backward_cpu of detection_output_layer.cpp and multibox_loss_layer.cpp. Float64; maps
are dicts iterated in key order, as std::map is. The kernels are checked against these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FLT_MAX = 3.4028234663852886e38
FLT_MIN = 1.1754943508222875e-38

Box = list[float]


def bbox_size(b: Box) -> float:
    if b[2] < b[0] or b[3] < b[1]:
        return 0.0
    return (b[2] - b[0]) * (b[3] - b[1])


def jaccard(b1: Box, b2: Box) -> float:
    if b2[0] > b1[2] or b2[2] < b1[0] or b2[1] > b1[3] or b2[3] < b1[1]:
        inter = [0.0, 0.0, 0.0, 0.0]
    else:
        inter = [max(b1[0], b2[0]), max(b1[1], b2[1]), min(b1[2], b2[2]), min(b1[3], b2[3])]
    w, h = inter[2] - inter[0], inter[3] - inter[1]
    if w > 0 and h > 0:
        s = w * h
        return s / (bbox_size(b1) + bbox_size(b2) - s)
    return 0.0


def decode_bbox(prior: Box, var: Box, code: str, var_in_target: bool, b: Box) -> Box:
    if code == "CORNER":
        if var_in_target:
            return [prior[k] + b[k] for k in range(4)]
        return [prior[k] + var[k] * b[k] for k in range(4)]
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    if code == "CENTER_SIZE":
        pcx, pcy = (prior[0] + prior[2]) / 2.0, (prior[1] + prior[3]) / 2.0
        if var_in_target:
            cx, cy = b[0] * pw + pcx, b[1] * ph + pcy
            w, h = math.exp(b[2]) * pw, math.exp(b[3]) * ph
        else:
            cx, cy = var[0] * b[0] * pw + pcx, var[1] * b[1] * ph + pcy
            w, h = math.exp(var[2] * b[2]) * pw, math.exp(var[3] * b[3]) * ph
        return [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    size = [pw, ph, pw, ph]
    if var_in_target:
        return [prior[k] + b[k] * size[k] for k in range(4)]
    return [prior[k] + var[k] * b[k] * size[k] for k in range(4)]


def encode_bbox(prior: Box, var: Box, code: str, var_in_target: bool, b: Box) -> Box:
    if code == "CORNER":
        if var_in_target:
            return [b[k] - prior[k] for k in range(4)]
        return [(b[k] - prior[k]) / var[k] for k in range(4)]
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    if code == "CENTER_SIZE":
        pcx, pcy = (prior[0] + prior[2]) / 2.0, (prior[1] + prior[3]) / 2.0
        bw, bh = b[2] - b[0], b[3] - b[1]
        bcx, bcy = (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0
        out = [(bcx - pcx) / pw, (bcy - pcy) / ph, math.log(bw / pw), math.log(bh / ph)]
        return out if var_in_target else [out[k] / var[k] for k in range(4)]
    size = [pw, ph, pw, ph]
    out = [(b[k] - prior[k]) / size[k] for k in range(4)]
    return out if var_in_target else [out[k] / var[k] for k in range(4)]


def get_max_score_index(scores: list[float], threshold: float, top_k: int
                        ) -> list[tuple[float, int]]:
    pairs = [(s, i) for i, s in enumerate(scores) if s > threshold]
    pairs.sort(key=lambda t: -t[0])  # std::stable_sort, descending
    if -1 < top_k < len(pairs):
        pairs = pairs[:top_k]
    return pairs


def apply_nms_fast(boxes: list[Box], scores: list[float], score_threshold: float,
                   nms_threshold: float, eta: float, top_k: int) -> list[int]:
    pairs = get_max_score_index(scores, score_threshold, top_k)
    adaptive = nms_threshold
    indices: list[int] = []
    while pairs:
        idx = pairs[0][1]
        keep = True
        for kept in indices:
            if not keep:
                break
            keep = jaccard(boxes[idx], boxes[kept]) <= adaptive
        if keep:
            indices.append(idx)
        pairs.pop(0)
        if keep and eta < 1 and adaptive > 0.5:
            adaptive *= eta
    return indices


def _priors(prior: np.ndarray, num_priors: int) -> tuple[list[Box], list[Box]]:
    """GetPriorBBoxes."""
    d = prior.reshape(-1)
    boxes = [list(d[i * 4: i * 4 + 4]) for i in range(num_priors)]
    var = [list(d[(num_priors + i) * 4: (num_priors + i) * 4 + 4]) for i in range(num_priors)]
    return boxes, var


def _loc_predictions(loc: np.ndarray, num_priors: int, loc_classes: int, share: bool
                     ) -> list[dict[int, list[Box]]]:
    """GetLocPredictions."""
    out = []
    for i in range(loc.shape[0]):
        d = loc[i].reshape(-1)
        preds: dict[int, list[Box]] = {}
        for p in range(num_priors):
            start = p * loc_classes * 4
            for c in range(loc_classes):
                label = -1 if share else c
                preds.setdefault(label, [[]] * num_priors)[p] = list(
                    d[start + c * 4: start + c * 4 + 4])
        out.append(preds)
    return out


def detection_output(loc: np.ndarray, conf: np.ndarray, prior: np.ndarray, *,
                     num_classes: int, share_location: bool = True,
                     background_label_id: int = 0, code_type: str = "CORNER",
                     variance_encoded_in_target: bool = False, nms_threshold: float = 0.3,
                     top_k: int = -1, eta: float = 1.0, keep_top_k: int = -1,
                     confidence_threshold: float = -FLT_MAX) -> np.ndarray:
    """DetectionOutputLayer::Forward_cpu (save/visualize aside): 1 x 1 x D x 7."""
    num, c = loc.shape[0], num_classes
    num_priors = prior.shape[2] // 4
    loc_classes = 1 if share_location else c
    all_loc = _loc_predictions(loc, num_priors, loc_classes, share_location)
    all_conf = []
    for i in range(num):
        d = conf[i].reshape(-1)
        all_conf.append({k: [d[p * c + k] for p in range(num_priors)] for k in range(c)})
    pboxes, pvars = _priors(prior, num_priors)
    all_decoded = []
    for i in range(num):
        decoded = {}
        for k in range(loc_classes):
            label = -1 if share_location else k
            if label == background_label_id:
                continue
            decoded[label] = [decode_bbox(pboxes[j], pvars[j], code_type,
                                          variance_encoded_in_target, all_loc[i][label][j])
                              for j in range(num_priors)]
        all_decoded.append(decoded)
    all_indices = []
    num_kept = 0
    for i in range(num):
        indices: dict[int, list[int]] = {}
        num_det = 0
        for k in range(c):
            if k == background_label_id:
                continue
            boxes = all_decoded[i][-1 if share_location else k]
            indices[k] = apply_nms_fast(boxes, all_conf[i][k], confidence_threshold,
                                        nms_threshold, eta, top_k)
            num_det += len(indices[k])
        if -1 < keep_top_k < num_det:
            pairs = [(all_conf[i][label][idx], (label, idx))
                     for label in sorted(indices) for idx in indices[label]]
            pairs.sort(key=lambda t: -t[0])  # std::sort: the tests have no ties
            new: dict[int, list[int]] = {}
            for _, (label, idx) in pairs[:keep_top_k]:
                new.setdefault(label, []).append(idx)
            all_indices.append(new)
            num_kept += keep_top_k
        else:
            all_indices.append(indices)
            num_kept += num_det
    if num_kept == 0:
        out = -np.ones((num, 7))
        out[:, 0] = np.arange(num)
        return out.reshape(1, 1, num, 7)
    rows = []
    for i in range(num):
        for label in sorted(all_indices[i]):
            boxes = all_decoded[i][-1 if share_location else label]
            for idx in all_indices[i][label]:
                rows.append([i, label, all_conf[i][label][idx], *boxes[idx]])
    return np.array(rows, dtype=np.float64).reshape(1, 1, len(rows), 7)


# --------------------------------------------------------------------------- MultiBoxLoss


def get_ground_truth(gt: np.ndarray, background: int, use_difficult: bool
                     ) -> dict[int, list[dict[str, Any]]]:
    num_gt = gt.shape[2]
    d = gt.reshape(-1)
    out: dict[int, list[dict[str, Any]]] = {}
    for i in range(num_gt):
        r = d[i * 8: i * 8 + 8]
        item = int(r[0])
        if item == -1:
            continue
        label = int(r[1])
        assert label != background, "Found background label in the dataset."
        if not use_difficult and bool(r[7]):
            continue
        out.setdefault(item, []).append({"box": list(r[3:7]), "label": label})
    return dict(sorted(out.items()))


def _cross(b: Box) -> bool:
    return any(v < 0 or v > 1 for v in b)


def match_bbox(gts: list[dict[str, Any]], preds: list[Box], label: int, match_type: str,
               threshold: float, ignore_cross: bool) -> tuple[list[int], list[float]]:
    n = len(preds)
    match, match_ov = [-1] * n, [0.0] * n
    gt_idx = [i for i, g in enumerate(gts) if label == -1 or g["label"] == label]
    if not gt_idx:
        return match, match_ov
    overlaps: dict[int, dict[int, float]] = {}
    for i in range(n):
        if ignore_cross and _cross(preds[i]):
            match[i] = -2
            continue
        for j in range(len(gt_idx)):
            ov = jaccard(preds[i], gts[gt_idx[j]]["box"])
            if ov > 1e-6:
                match_ov[i] = max(match_ov[i], ov)
                overlaps.setdefault(i, {})[j] = ov
    pool = list(range(len(gt_idx)))
    while pool:
        best_i, best_j, best = -1, -1, -1.0
        for i in sorted(overlaps):
            if match[i] != -1:
                continue
            for j in pool:
                if j in overlaps[i] and overlaps[i][j] > best:
                    best_i, best_j, best = i, j, overlaps[i][j]
        if best_i == -1:
            break
        match[best_i], match_ov[best_i] = gt_idx[best_j], best
        pool.remove(best_j)
    if match_type == "PER_PREDICTION":
        for i in sorted(overlaps):
            if match[i] != -1:
                continue
            best_j, best = -1, -1.0
            for j in range(len(gt_idx)):
                ov = overlaps[i].get(j)
                if ov is not None and ov >= threshold and ov > best:
                    best_j, best = j, ov
            if best_j != -1:
                match[i], match_ov[i] = gt_idx[best_j], best
    return match, match_ov


def _conf_loss(row: np.ndarray, label: int, logistic: bool) -> float:
    if logistic:
        loss = 0.0
        for k, x in enumerate(row):
            t = 1.0 if k == label else 0.0
            pos = 1.0 if x >= 0 else 0.0
            loss -= x * (t - pos) - math.log(1 + math.exp(x - 2 * x * pos))
        return loss
    z = np.exp(row - row.max())
    return -math.log(max(z[label] / z.sum(), FLT_MIN))


def multibox_loss(loc: np.ndarray, conf: np.ndarray, prior: np.ndarray, gt: np.ndarray, *,
                  num_classes: int, share_location: bool = True, background_label_id: int = 0,
                  use_difficult_gt: bool = True, match_type: str = "PER_PREDICTION",
                  overlap_threshold: float = 0.5, use_prior_for_matching: bool = True,
                  ignore_cross_boundary_bbox: bool = False, code_type: str = "CORNER",
                  encode_variance_in_target: bool = False, bp_inside: bool = False,
                  mining: bool = True, neg_pos_ratio: float = 3.0, neg_overlap: float = 0.5,
                  map_object_to_agnostic: bool = False, loc_loss_type: str = "SMOOTH_L1",
                  conf_loss_type: str = "SOFTMAX", loc_weight: float = 1.0,
                  normalization: str = "VALID") -> tuple[float, np.ndarray, np.ndarray]:
    """MultiBoxLossLayer Forward_cpu and Backward_cpu (top diff 1): (loss, dloc, dconf)."""
    num, c, bg = loc.shape[0], num_classes, background_label_id
    num_priors = prior.shape[2] // 4
    loc_classes = 1 if share_location else c
    logistic = conf_loss_type == "LOGISTIC"
    all_gt = get_ground_truth(gt, bg, use_difficult_gt)
    pboxes, pvars = _priors(prior, num_priors)
    all_loc = _loc_predictions(loc, num_priors, loc_classes, share_location)

    # FindMatches
    all_match: list[dict[int, list[int]]] = []
    all_ov: list[dict[int, list[float]]] = []
    for i in range(num):
        mi: dict[int, list[int]] = {}
        mo: dict[int, list[float]] = {}
        if i in all_gt:
            gts = all_gt[i]
            if not use_prior_for_matching:
                assert share_location
                boxes = [decode_bbox(pboxes[j], pvars[j], code_type, encode_variance_in_target,
                                     all_loc[i][-1][j]) for j in range(num_priors)]
                mi[-1], mo[-1] = match_bbox(gts, boxes, -1, match_type, overlap_threshold,
                                            ignore_cross_boundary_bbox)
            else:
                tmi, tmo = match_bbox(gts, pboxes, -1, match_type, overlap_threshold,
                                      ignore_cross_boundary_bbox)
                if share_location:
                    mi[-1], mo[-1] = tmi, tmo
                else:
                    for k in range(loc_classes):
                        if k == bg:
                            continue
                        mi[k] = [m if m > -1 and gts[m]["label"] == k else -1 for m in tmi]
                        mo[k] = list(tmo)
        all_match.append(dict(sorted(mi.items())))
        all_ov.append(mo)

    # MineHardExamples (MAX_NEGATIVE, no NMS)
    num_matches = sum(1 for mi in all_match for v in mi.values() for m in v if m > -1)
    all_neg: list[list[int]] = []
    for i in range(num):
        neg: list[int] = []
        if mining:
            d = conf[i].reshape(-1)
            loss = []
            for p in range(num_priors):
                label = bg
                for v in all_match[i].values():
                    if v[p] > -1:
                        label = all_gt[i][v[p]]["label"]
                        break
                loss.append(_conf_loss(d[p * c: p * c + c], label, logistic))
            sel: set[int] = set()
            for label, v in all_match[i].items():
                cand = [(loss[m], m) for m in range(num_priors)
                        if v[m] == -1 and all_ov[i][label][m] < neg_overlap]
                num_pos = sum(1 for m in v if m > -1)
                num_sel = min(int(np.float32(num_pos) * np.float32(neg_pos_ratio)), len(cand))
                cand.sort(key=lambda t: -t[0])  # std::sort: the tests have no ties
                sel.update(m for _, m in cand[:num_sel])
                neg += [m for m in range(num_priors) if v[m] == -1 and m in sel]
        all_neg.append(neg)

    if normalization == "VALID":
        norm = max(1.0, float(num_matches))
    else:
        norm = max(1.0, float({"FULL": num * num_priors, "BATCH_SIZE": num, "NONE": 1}[
            normalization]))
    dloc = np.zeros_like(loc).reshape(num, -1)
    dconf = np.zeros_like(conf).reshape(num, -1)

    # EncodeLocPrediction, the loc loss layer, and its backward copied into place.
    loc_loss = 0.0
    for i in range(num):
        for label, v in all_match[i].items():
            for j, m in enumerate(v):
                if m <= -1:
                    continue
                g = encode_bbox(pboxes[j], pvars[j], code_type, encode_variance_in_target,
                                all_gt[i][m]["box"])
                pred = list(all_loc[i][label][j])
                if bp_inside:
                    mb = pboxes[j] if use_prior_for_matching else decode_bbox(
                        pboxes[j], pvars[j], code_type, encode_variance_in_target, pred)
                    pred = [g[k] if mb[k] < 0 or mb[k] > 1 else pred[k] for k in range(4)]
                if encode_variance_in_target:
                    pred = [pred[k] / pvars[j][k] for k in range(4)]
                    g = [g[k] / pvars[j][k] for k in range(4)]
                start = loc_classes * 4 * j + (0 if share_location else label) * 4
                for k in range(4):
                    diff = pred[k] - g[k]
                    if loc_loss_type == "SMOOTH_L1":
                        loc_loss += 0.5 * diff * diff if abs(diff) < 1 else abs(diff) - 0.5
                        grad = diff if abs(diff) < 1 else float(np.sign(diff))
                    else:
                        loc_loss += 0.5 * diff * diff
                        grad = diff
                    dloc[i, start + k] = loc_weight * grad / norm

    # EncodeConfPrediction, the conf loss layer, and its backward. Rows: (prior, label,
    # what it is: a positive, a mined negative, or, without mining, any other prior).
    conf_loss = 0.0
    for i in range(num):
        d = conf[i].reshape(-1)
        positives = {}
        for v in all_match[i].values():
            for j, m in enumerate(v):
                if m > -1:
                    positives[j] = bg + 1 if map_object_to_agnostic else all_gt[i][m]["label"]
        rows: list[tuple[int, int, str]] = []
        if mining:
            if i in all_gt:
                rows = [(j, lab, "pos") for j, lab in positives.items()]
                rows += [(j, bg, "neg") for j in all_neg[i]]
        else:
            rows = [(j, positives.get(j, bg), "pos" if j in positives else "rest")
                    for j in range(num_priors)]
        for j, lab, what in rows:
            x = d[j * c: j * c + c]
            if logistic:
                t = np.full(c, float(bg))  # caffe_set(conf_gt, background_label_id)
                if what == "pos":
                    t[lab] = 1.0
                elif what == "neg" and 0 <= bg < c:
                    t[bg] = 1.0
                pos = (x >= 0).astype(np.float64)
                conf_loss += float(-(x * (t - pos) - np.log(1 + np.exp(x - 2 * x * pos))).sum())
                dconf[i, j * c: j * c + c] = (1 / (1 + np.exp(-x)) - t) / norm
            else:
                z = np.exp(x - x.max())
                prob = z / z.sum()
                conf_loss += -math.log(max(prob[lab], FLT_MIN))
                g = prob.copy()
                g[lab] -= 1
                dconf[i, j * c: j * c + c] = g / norm
    loss = (loc_weight * loc_loss + conf_loss) / norm
    return loss, dloc.reshape(loc.shape), dconf.reshape(conf.shape)


# --------------------------------------------------------------------------- DetectionEvaluate


def detection_evaluate(det: np.ndarray, gt: np.ndarray, *, num_classes: int,
                       background_label_id: int = 0, overlap_threshold: float = 0.5,
                       evaluate_difficult_gt: bool = True) -> np.ndarray:
    """DetectionEvaluateLayer Reshape + Forward_cpu without name_size_file."""
    bg = background_label_id
    d, g = det.reshape(-1, 7), gt.reshape(-1, 8)
    num_pos_classes = num_classes if bg == -1 else num_classes - 1
    top = np.zeros((num_pos_classes + int((d[:, 1] != -1).sum()), 5))
    detections: dict[int, dict[int, list[dict[str, Any]]]] = {}  # GetDetectionResults
    for r in d:
        if int(r[0]) == -1:
            continue
        assert int(r[1]) != bg
        detections.setdefault(int(r[0]), {}).setdefault(int(r[1]), []).append(
            {"score": r[2], "box": list(r[3:7])})
    gts: dict[int, dict[int, list[dict[str, Any]]]] = {}  # GetGroundTruth, LabelBBox form
    for r in g:
        if int(r[0]) == -1:
            break
        gts.setdefault(int(r[0]), {}).setdefault(int(r[1]), []).append(
            {"box": list(r[3:7]), "difficult": bool(r[7])})
    num_pos: dict[int, int] = {}
    for image in sorted(gts):
        for label in sorted(gts[image]):
            boxes = gts[image][label]
            count = len(boxes) if evaluate_difficult_gt else sum(
                1 for b in boxes if not b["difficult"])
            num_pos[label] = num_pos.get(label, 0) + count
    n = 0
    for c in range(num_classes):
        if c == bg:
            continue
        top[n] = [-1, c, num_pos.get(c, 0), -1, -1]
        n += 1
    for image in sorted(detections):
        for label in sorted(detections[image]):
            if label == -1:
                continue
            dets = detections[image][label]
            truth = gts.get(image, {}).get(label)
            if truth is None:
                for det_ in dets:
                    top[n] = [image, label, det_["score"], 0, 1]
                    n += 1
                continue
            visited = [False] * len(truth)
            for det_ in sorted(dets, key=lambda x: -x["score"]):  # the tests have no ties
                top[n, :3] = [image, label, det_["score"]]
                best, jmax = -1.0, -1
                for j, t in enumerate(truth):
                    ov = jaccard(det_["box"], t["box"])
                    if ov > best:
                        best, jmax = ov, j
                if best >= overlap_threshold:
                    if evaluate_difficult_gt or not truth[jmax]["difficult"]:
                        if not visited[jmax]:
                            top[n, 3:] = [1, 0]
                            visited[jmax] = True
                        else:
                            top[n, 3:] = [0, 1]
                else:
                    top[n, 3:] = [0, 1]
                n += 1
    return top.reshape(1, 1, -1, 5)
