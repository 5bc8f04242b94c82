"""ResNet feature extractor with frozen batch norm, state-dict compatible with torchvision.

LeRobot builds ACT's backbone from torchvision with ``norm_layer=FrozenBatchNorm2d`` and keeps
everything up to ``layer4``; this module reproduces that structure (same parameter names, no
``fc``) so checkpoints load directly, without torchvision on the robot.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as F

from act_policy.core.errors import CheckpointError

# name -> (block type, blocks per stage); config.SUPPORTED_BACKBONES lists the names without torch
RESNETS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
FROZEN_BN_EPS = 1e-5


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics: ``y = (x - mean) / sqrt(var + eps) * weight + bias``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for name, init in (("weight", torch.ones), ("bias", torch.zeros),
                           ("running_mean", torch.zeros), ("running_var", torch.ones)):
            self.register_buffer(name, init(channels))

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.weight * (self.running_var + FROZEN_BN_EPS).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_and_shift()
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv(cin, width, 3, stride), FrozenBatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, cout, 3), FrozenBatchNorm2d(cout)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv(cin, width, 1), FrozenBatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride), FrozenBatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, cout, 1), FrozenBatchNorm2d(cout)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, 1, stride), FrozenBatchNorm2d(cout))


class ResNetBackbone(nn.Module):
    """Stem + four stages; returns the ``layer4`` feature map (stride 32)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in RESNETS:
            raise CheckpointError(f"config: vision_backbone {name!r} is not supported; "
                                  f"expected one of {sorted(RESNETS)}")
        kind, depths = RESNETS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for index, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True), start=1):
            blocks = []
            for i in range(depth):
                blocks.append(block(cin, width, 2 if (i == 0 and index > 1) else 1))
                cin = width * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def fold_frozen_batch_norm(module: nn.Module) -> None:
    """Fold every conv → FrozenBatchNorm2d pair into the conv (exact up to rounding).

    Inference then does one pass over each feature map instead of two, and exported graphs
    are plain Conv+Relu chains that quantizers and the Hailo compiler handle best.
    """
    for child in list(module.children()):
        fold_frozen_batch_norm(child)
    names = [n for n, _ in module.named_children()]
    for conv_name, bn_name in itertools.pairwise(names):
        conv, bn = getattr(module, conv_name), getattr(module, bn_name)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, FrozenBatchNorm2d):
            scale, shift = bn.scale_and_shift()
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                              stride=conv.stride, padding=conv.padding, bias=True)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale[:, None, None, None])
                bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
                fused.bias.copy_(bias * scale + shift)
            setattr(module, conv_name, fused)
            setattr(module, bn_name, nn.Identity())
