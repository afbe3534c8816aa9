"""ShuffleChannel (fork: farmingyard/ShuffleNet; not in BVLC): ShuffleNet's channel shuffle."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class ShuffleChannelParams:
    group: int = field(default=1, metadata=doc("groups whose channels are interleaved"))


@register
class ShuffleChannel(LayerType[ShuffleChannelParams]):
    """Interleaves the channels of `group` groups (fork: farmingyard/ShuffleNet; not in BVLC).

    Zhang et al., "ShuffleNet" (2017): the channels, seen as a (group, C / group) matrix,
    are transposed, so that channel ``g * C/group + j`` moves to ``j * group + g``. As
    farmingyard/ShuffleNet's shuffle_channel_layer.cpp (``shuffle_channel_param {
    group }``, default 1): the top is 4-D (N, C, H, W), axes a smaller bottom lacks
    being 1, as the fork's legacy Reshape makes it.
    """

    fork = "ShuffleNet (farmingyard/ShuffleNet)"

    Params = ShuffleChannelParams

    def shape(self, p: ShuffleChannelParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if p.group < 1:
            raise ctx.error(f"group must be greater than 0, got {p.group}", "group")
        if not 2 <= len(b) <= 4:
            raise ctx.error(f"needs an (N, C[, H[, W]]) input, got {list(b)}")
        if b[1] % p.group:
            raise ctx.error(f"{b[1]} channels are not divisible by group {p.group}", "group")
        return ((*b, *(1,) * (4 - len(b))),)

    def lower(self, p: ShuffleChannelParams, bottoms: tuple[Shape, ...],
              tops: tuple[Shape, ...]) -> Kernel:
        from ..kernels import plumbing

        return Call(plumbing.shuffle_channel, {"group": p.group})
