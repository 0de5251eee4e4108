"""Reads every run under a TensorBoard log directory with TensorBoard's own
EventAccumulator; prints JSON: {run: {"scalars": {tag: [[step, value], ...]},
"pr_curves": {tag: [[step, shape, rows], ...]}}}.

Usage: read_tensorboard.py LOGDIR
"""

import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util


def read_run(path: str) -> dict:
    acc = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {
        tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in tags["scalars"]
    }
    curves = {}
    for tag in tags["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if plugin != "pr_curves":
            continue
        curves[tag] = [
            [e.step, list(a.shape), a.tolist()]
            for e in acc.Tensors(tag)
            for a in [tensor_util.make_ndarray(e.tensor_proto)]
        ]
    return {"scalars": scalars, "pr_curves": curves}


def main() -> None:
    logdir = sys.argv[1]
    runs = {
        name: read_run(os.path.join(logdir, name))
        for name in sorted(os.listdir(logdir))
        if os.path.isdir(os.path.join(logdir, name))
    }
    json.dump(runs, sys.stdout)


if __name__ == "__main__":
    main()
