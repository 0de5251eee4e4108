"""Writes the TorchScript modules the tests upload to gradstream.

Usage: make_torchscript.py OUT_DIR

Writes into OUT_DIR:
  mlp.pt         torch.jit.script of a module for 8 features and 3 classes:
                 Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear (named submodules)
  mlp_nodrop.pt  the same without dropout (deterministic: resumable bit for bit)
  cnn.pt         torch.jit.script of a CNN for [batch, 1, 8, 8] images and 3 classes
  traced.pt      torch.jit.trace of an nn.Sequential (8 features, 3 classes), in eval mode
  wrong_out.pt   8 features in, 5 logits out
  wrong_in.pt    expects 5 features
  frozen.pt      every parameter has requires_grad = False
  state_dict.pt  a state_dict saved with torch.save (not TorchScript)
  modules.json   {file: {"parameters": [[name, shape, requires_grad], ...]}}
"""

import json
import os
import sys

import torch
from torch import nn


class Mlp(nn.Module):
    def __init__(self, features: int, classes: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(features, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


class Cnn(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.head(x.flatten(1))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    modules = {
        "mlp.pt": torch.jit.script(Mlp(8, 3, 0.2)),
        "mlp_nodrop.pt": torch.jit.script(Mlp(8, 3, 0.0)),
        "cnn.pt": torch.jit.script(Cnn(3)),
        "wrong_out.pt": torch.jit.script(Mlp(8, 5, 0.0)),
        "wrong_in.pt": torch.jit.script(Mlp(5, 3, 0.0)),
    }
    seq = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    modules["traced.pt"] = torch.jit.trace(seq, torch.randn(4, 8))
    frozen = Mlp(8, 3, 0.0)
    for p in frozen.parameters():
        p.requires_grad_(False)
    modules["frozen.pt"] = torch.jit.script(frozen)
    info = {}
    for name, m in modules.items():
        m.save(os.path.join(out, name))
        info[name] = {
            "parameters": [
                [n, list(p.shape), p.requires_grad] for n, p in m.named_parameters()
            ]
        }
    torch.save(Mlp(8, 3, 0.0).state_dict(), os.path.join(out, "state_dict.pt"))
    with open(os.path.join(out, "modules.json"), "w") as f:
        json.dump(info, f)


if __name__ == "__main__":
    main()
