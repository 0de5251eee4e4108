"""The TorchScript benchmark's module: the throughput benchmark's MLP (Linear -> ReLU ->
Linear) scripted and saved, for gradstream to train as an uploaded model.

    .venv/bin/python bench/make_torchscript_mlp.py OUT.pt --features 32 --hidden 128 --classes 10
"""

import argparse

import torch
from torch import nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(args.features, args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.classes)
    )
    torch.jit.script(model).save(args.out)


if __name__ == "__main__":
    main()
