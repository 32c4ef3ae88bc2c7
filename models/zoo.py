"""The model zoo: small torch networks that cover the layer kinds mpqc must handle.

`digits_cnn` is the default model (depthwise and pointwise convs, 16x16 input); the others
are CIFAR-shaped (3x32x32) ResNet and MobileNetV2 variants, and a transformer block whose
Linear layers export as MatMul with constant weights next to activation-by-activation
attention MatMuls, LayerNormalization and Gelu."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ZooEntry", "ZOO", "resnet18_cifar"]


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """Six quantizable layers; a depthwise conv feeding a 1x1 conv, the pattern where
    layer-wise QAT necessity differs most."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(1, 16),
            _conv_bn(16, 32, stride=2),
            _conv_bn(32, 32, groups=32),
            _conv_bn(32, 64, k=1),
            _conv_bn(64, 64, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, stride=stride), _conv_bn(cout, cout, relu=False))
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, k=1, stride=stride, relu=False)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, widths[0])]
        cin = widths[0]
        for i, (count, width) in enumerate(zip(blocks, widths)):
            for j in range(count):
                layers.append(BasicBlock(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            _conv_bn(cin, hidden, k=1),
            _conv_bn(hidden, hidden, stride=stride, groups=hidden),
            _conv_bn(hidden, cout, k=1, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_res else y


class MobileNetV2Cifar(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        config = [(16, 1, 1), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4), (64, 2, 4)]
        layers: list[nn.Module] = [_conv_bn(3, 16)]
        cin = 16
        for cout, stride, expand in config:
            layers.append(InvertedResidual(cin, cout, stride, expand))
            cin = cout
        layers += [_conv_bn(cin, 128, k=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class TinyTransformer(nn.Module):
    """One pre-norm encoder block over the 8 rows of a digit as tokens."""

    def __init__(self, dim: int = 32, heads: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.zeros(1, 8, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos
        b, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        h = h + self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))
        h = h + self.mlp(self.norm2(h))
        return self.head(h.mean(dim=1))


def resnet18_cifar() -> nn.Module:
    """CIFAR-shaped ResNet-18 (for benchmarks; too large to ship trained)."""
    return ResNetCifar((2, 2, 2, 2), (64, 128, 256, 512))


@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: its torch factory, input shape and training settings."""

    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    epochs: int
    lr: float
    description: str


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry("digits_cnn", DigitsCNN, (1, 1, 16, 16), 12, 3e-3, "6-layer CNN with depthwise + pointwise, 1x16x16"),
        ZooEntry(
            "resnet8",
            lambda: ResNetCifar((1, 1, 1), (16, 32, 64)),
            (1, 3, 32, 32),
            10,
            3e-3,
            "CIFAR-style ResNet-8, 3x32x32",
        ),
        ZooEntry(
            "mobilenetv2", MobileNetV2Cifar, (1, 3, 32, 32), 12, 3e-3, "MobileNetV2-style with depthwise convs, 3x32x32"
        ),
        ZooEntry("transformer", TinyTransformer, (1, 8, 8), 40, 3e-3, "one encoder block, 8 tokens x 8 features"),
    )
}
