"""Helpers for the runtime tests: a tiny spec that trains in a second on the digits."""

from __future__ import annotations

from pathlib import Path

TINY = """
name: "tiny"
let hidden = 16
input {{ name: "data"  shape: [1, 8, 8] }}
input {{ name: "label" shape: [] }}
layer {{ name: "fc1" type: InnerProduct bottom: "data" num_output: $hidden
        weight_filler: gaussian(0.1) }}
layer {{ name: "relu1" type: ReLU bottom: "fc1" top: "fc1" }}
{dropout}
layer {{ name: "fc2" type: InnerProduct bottom: "fc1" num_output: 10
        weight_filler: gaussian(0.1) }}
layer {{ name: "loss" type: SoftmaxWithLoss bottom: ["fc2", "label"] }}
layer {{ name: "accuracy" type: Accuracy bottom: ["fc2", "label"] phase: TEST }}
{data}
solver {{ base_lr: 0.1  momentum: 0.9  weight_decay: 0.001  lr_policy: "step"  gamma: 0.5
         stepsize: 5  max_iter: 12  test_interval: 6  test_iter: 2  display: 4
         snapshot: 0  snapshot_prefix: "snaps/tiny"  random_seed: 7 }}
"""
DROPOUT = 'layer { name: "drop1" type: Dropout bottom: "fc1" top: "fc1" dropout_ratio: 0.3 }'
DATA = 'data { source: "digits"  batch_size: 16 }'


def write_spec(path: Path, *, dropout: bool = True, data: str = DATA) -> Path:
    """The tiny spec written to ``path``, with or without its dropout layer."""
    path.write_text(TINY.format(dropout=DROPOUT if dropout else "", data=data))
    return path
