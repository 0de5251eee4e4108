"""scikit-learn reference values for tests/imbalance_reference.rs.

Usage: python class_weights.py CASES_JSON OUT_JSON

CASES_JSON is a list of label arrays (class indices 0..k-1, every class present, so
k = max + 1). OUT_JSON gets {"sklearn_version": str, "weights": [[float] * k, ...]}:
compute_class_weight("balanced", classes=np.arange(k), y=y) for each case, in order.
"""

import json
import sys

import numpy as np
import sklearn
from sklearn.utils.class_weight import compute_class_weight


def main():
    cases_path, out_path = sys.argv[1], sys.argv[2]
    with open(cases_path) as f:
        cases = json.load(f)
    weights = []
    for y in cases:
        y = np.asarray(y, dtype=np.int64)
        k = int(y.max()) + 1
        w = compute_class_weight("balanced", classes=np.arange(k), y=y)
        weights.append([float(v) for v in w])
    with open(out_path, "w") as f:
        json.dump({"sklearn_version": sklearn.__version__, "weights": weights}, f)


if __name__ == "__main__":
    main()
