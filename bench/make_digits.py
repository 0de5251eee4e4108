"""Writes scikit-learn's bundled 8x8 digits (1,797 images, no download) as a CSV:
64 pixel columns p0..p63 (row-major, values 0..16) and a label column.

Usage: make_digits.py OUT.csv
"""

import sys

from sklearn.datasets import load_digits

digits = load_digits()
with open(sys.argv[1], "w") as f:
    f.write(",".join(f"p{i}" for i in range(64)) + ",label\n")
    for x, y in zip(digits.data, digits.target):
        f.write(",".join(str(int(v)) for v in x) + f",{y}\n")
