"""The throughput benchmark's PyTorch side: the same MLP, data size, optimizer and batch
size as benches/throughput.rs, in eager PyTorch. Prints one JSON line.

    .venv/bin/python bench/pytorch_mlp.py --samples 60000 --features 32 --hidden 128 \
        --classes 10 --batch-size 64 --epochs 3
"""

import argparse
import json
import time

import torch
from torch import nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    centres = torch.randn(args.classes, args.features) * 3.0
    y = torch.randint(0, args.classes, (args.samples,))
    x = centres[y] + torch.randn(args.samples, args.features)
    model = nn.Sequential(
        nn.Linear(args.features, args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.classes)
    )
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    steps = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(args.samples)
        xs, ys = x[perm], y[perm]
        for i in range(0, args.samples, args.batch_size):
            xb, yb = xs[i : i + args.batch_size], ys[i : i + args.batch_size]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": seconds,
        "steps": steps,
        "samples_per_second": args.samples * args.epochs / seconds,
        "final_loss": loss.item(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
