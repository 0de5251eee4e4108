"""Loads gradstream's exported models in PyTorch and prints their class probabilities.

Usage: check_export.py MODEL.pt MODEL.safetensors MODEL_CARD.json ROWS.json OUT.json

ROWS.json holds raw (unnormalized) feature rows. OUT.json gets
{"torchscript": [[p...]...], "safetensors": [[p...]...]}: the TorchScript module applied
to the raw rows, and the nn.Sequential rebuilt from the model card (only torch.nn layers
named there), loaded with load_state_dict(strict=True) from the safetensors file, applied
to the rows normalized as the card says, then softmax (for an ensemble, an nn.ModuleList
of such Sequentials whose softmax outputs are averaged).
"""

import copy
import json
import sys

import torch
from safetensors.torch import load_file


def sequential(layers):
    mods = []
    for layer in layers:
        kind = layer.pop("type")
        mods.append(getattr(torch.nn, kind)(**layer))
    return torch.nn.Sequential(*mods)


def main():
    pt, st, card_path, rows_path, out_path = sys.argv[1:]
    with open(rows_path) as f:
        x = torch.tensor(json.load(f), dtype=torch.float32)
    with open(card_path) as f:
        card = json.load(f)
    out = {}

    scripted = torch.jit.load(pt)
    scripted.eval()
    with torch.no_grad():
        out["torchscript"] = scripted(x).tolist()

    arch = card["architecture"]
    members = arch["members"]
    if members == 1:
        model = sequential(copy.deepcopy(arch["layers"]))
        parts = [model]
    else:
        # An ensemble: a ModuleList of identical Sequentials, probabilities averaged.
        parts = [sequential(copy.deepcopy(arch["layers"])) for _ in range(members)]
        model = torch.nn.ModuleList(parts)
    model.load_state_dict(load_file(st), strict=True)
    model.eval()
    mean = torch.tensor(card["normalization"]["mean"], dtype=torch.float32)
    std = torch.tensor(card["normalization"]["std"], dtype=torch.float32)
    with torch.no_grad():
        z = (x - mean) / std
        probs = sum(torch.softmax(p(z), dim=-1) for p in parts) / members
        out["safetensors"] = probs.tolist()
    out["labels"] = card["labels"]
    out["features"] = card["features"]
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
