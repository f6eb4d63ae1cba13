"""The splitter's network: a small U-Net trained from scratch, and its ONNX export.

torch is passed in by the caller (train.loop), so that importing this module needs no
torch.
"""
from __future__ import annotations

from pathlib import Path

from kirinuki.core.imageio import atomic_path
from kirinuki.train.data import INPUT


def build_net(torch, widths=(16, 32, 64, 96, 128)):
    """A U-Net: 3xSxS -> 4x(S/2)x(S/2) (centre logit, dy, dx, foreground logit)."""
    nn, F = torch.nn, torch.nn.functional

    def block(i, o, stride=1):
        return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    class SplitNet(nn.Module):
        def __init__(self):
            super().__init__()
            c = widths
            self.down = nn.ModuleList([block(3, c[0], 2)] + [block(c[i], c[i + 1], 2) for i in range(len(c) - 1)])
            self.up = nn.ModuleList([block(c[i + 1] + c[i], c[i]) for i in reversed(range(1, len(c) - 1))]
                                    + [block(c[1] + c[0], 32)])
            self.head = nn.Conv2d(32, 4, 1)

        def forward(self, x):
            skips = []
            for d in self.down:
                x = d(x)
                skips.append(x)
            x = skips.pop()
            for u in self.up:
                s = skips.pop()
                x = u(torch.cat([F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
            return self.head(x)

    return SplitNet()


def export_onnx(torch, net, out: Path) -> None:
    """The net as ONNX at `out` (written atomically): input 1x3xSxS, outputs centres and
    foreground through a sigmoid, offsets as they are (what extract.split.Splitter reads)."""
    class Exported(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            y = self.net(x)
            return torch.sigmoid(y[:, :1]), y[:, 1:3], torch.sigmoid(y[:, 3:])

    with atomic_path(out) as tmp, torch.no_grad():
        torch.onnx.export(Exported(net), torch.zeros(1, 3, INPUT, INPUT), str(tmp), input_names=["input"],
                          output_names=["centres", "offsets", "foreground"], opset_version=17, dynamo=False)
