"""The throughput benchmark's CNN case, PyTorch side: the digits CNN of benches/digits.rs
(two 3x3 conv blocks of 32 and 64 channels with batch norm, ReLU and 2x2 max pooling, a
128-unit dense layer with dropout 0.3), Adam, batch 32, trained in eager PyTorch on the
first ROWS rows of a digits CSV (make_digits.py). Prints one JSON line.

    .venv/bin/python bench/pytorch_cnn.py --csv digits.csv --rows 1437 --epochs 10
"""

import argparse
import json
import time

import numpy as np
import torch
from torch import nn


def block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    table = np.loadtxt(args.csv, delimiter=",", skiprows=1, dtype=np.float32)[: args.rows]
    x = torch.from_numpy(table[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(table[:, 64].astype(np.int64))
    torch.manual_seed(0)
    model = nn.Sequential(
        *block(1, 32), *block(32, 64), nn.Flatten(),
        nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    start = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(n)
        xs, ys = x[perm], y[perm]
        for i in range(0, n, args.batch_size):
            loss = loss_fn(model(xs[i : i + args.batch_size]), ys[i : i + args.batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "samples_per_second": n * args.epochs / seconds,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
