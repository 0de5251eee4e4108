"""Loads gradstream's exported models in PyTorch and prints their class probabilities.

Usage: check_export.py MODEL.pt MODEL.safetensors MODEL_CARD.json ROWS.json OUT.json

ROWS.json holds raw (unnormalized) feature rows. OUT.json gets
{"torchscript": [[p...]...], "safetensors": [[p...]...]}: the TorchScript module applied
to the raw rows, and the nn.Sequential rebuilt from the model card (only torch.nn layers
named there), loaded with load_state_dict(strict=True) from the safetensors file, applied
to the rows normalized as the card says, then softmax (for an ensemble, an nn.ModuleList
of such Sequentials whose softmax outputs are averaged).

For a model trained from an uploaded TorchScript module, the card names the trained module
files (next to the card) instead of layers: "safetensors" is then those modules applied to
the normalized rows (reshaped to the card's input_shape), after checking that the
safetensors file holds exactly their parameters.
"""

import copy
import json
import os
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
    mean = torch.tensor(card["normalization"]["mean"], dtype=torch.float32)
    std = torch.tensor(card["normalization"]["std"], dtype=torch.float32)
    if "modules" in arch:
        out["safetensors"] = scripted_modules(arch, card_path, st, (x - mean) / std).tolist()
        out["labels"] = card["labels"]
        out["features"] = card["features"]
        with open(out_path, "w") as f:
            json.dump(out, f)
        return
    if members == 1:
        model = sequential(copy.deepcopy(arch["layers"]))
        parts = [model]
    else:
        # An ensemble: a ModuleList of identical Sequentials, probabilities averaged.
        parts = [sequential(copy.deepcopy(arch["layers"])) for _ in range(members)]
        model = torch.nn.ModuleList(parts)
    model.load_state_dict(load_file(st), strict=True)
    model.eval()
    with torch.no_grad():
        z = (x - mean) / std
        probs = sum(torch.softmax(p(z), dim=-1) for p in parts) / members
        out["safetensors"] = probs.tolist()
    out["labels"] = card["labels"]
    out["features"] = card["features"]
    with open(out_path, "w") as f:
        json.dump(out, f)


def scripted_modules(arch, card_path, st, z):
    """Mean softmax of the trained TorchScript modules on normalized rows `z`."""
    folder = os.path.dirname(card_path)
    mods = [torch.jit.load(os.path.join(folder, n)) for n in arch["modules"]]
    members = arch["members"]
    assert len(mods) == members, (len(mods), members)
    params = load_file(st)
    seen = 0
    for j, m in enumerate(mods):
        m.eval()
        for name, p in m.named_parameters():
            key = name if members == 1 else f"{j}.{name}"
            assert torch.equal(params[key], p.detach()), key
            seen += 1
    assert seen == len(params), (seen, sorted(params))
    shape = arch.get("input_shape")
    if shape:
        z = z.view(-1, *shape)
    with torch.no_grad():
        return sum(torch.softmax(m(z), dim=-1) for m in mods) / members


if __name__ == "__main__":
    main()
