"""Writes labelled arrays with NumPy itself, for tests/arrays.rs: the files a user's
numpy.save / numpy.savez_compressed produce, and MNIST-format IDX files.

usage: write_arrays.py OUT_DIR          the files of tests/arrays.rs
       write_arrays.py OUT_DIR long     long-x.npy, long-y.npy: 8,000 rows x 8 features,
                                        2 classes (the job of tests/durability.rs)
"""
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
rng = np.random.default_rng(7)

if sys.argv[2:] == ["long"]:
    # Rows in random order: a shuffle buffer mixes only what it holds, so a file sorted by
    # class would give it one class at a time.
    y = rng.permutation(np.repeat([0, 1], 4000))
    x = rng.normal(size=(8000, 8)) + y[:, None] * 0.75
    np.save(out / "long-x.npy", x.astype(np.float32))
    np.save(out / "long-y.npy", y.astype(np.int64))
    sys.exit(0)

# A table: 3 Gaussian clusters in 4 dimensions, class ids 0, 5 and 9 (not 0..k-1).
ids = np.array([0, 5, 9])
y = ids[rng.integers(0, 3, size=300)]
centres = {0: [3, 0, 0, 0], 5: [0, 3, 0, 0], 9: [0, 0, 3, 0]}
x = np.stack([np.array(centres[c], dtype=np.float64) for c in y]) + rng.normal(size=(300, 4))
np.save(out / "table-x.npy", x.astype(np.float32))
np.save(out / "table-y.npy", y.astype(np.int64))
# The same in one compressed archive, float64 features under the user's own names.
np.savez_compressed(out / "table.npz", x_train=x, y_train=y.astype(np.int32))

# Images: [N, 8, 8] uint8, class 1 bright on the left half, class 0 on the right.
n = 400
labels = rng.integers(0, 2, size=n).astype(np.uint8)
images = rng.integers(0, 60, size=(n, 8, 8)).astype(np.uint8)
for i, c in enumerate(labels):
    if c == 1:
        images[i, :, :4] += 180
    else:
        images[i, :, 4:] += 180


def idx(path, array, code):
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(">u1").tobytes())


idx(out / "images-idx3-ubyte", images, 0x08)
idx(out / "labels-idx1-ubyte", labels, 0x08)
# The same images as a [N, 1, 8, 8] float .npy.
np.save(out / "images-x.npy", (images[:, None, :, :] / 255.0).astype(np.float32))
np.save(out / "images-y.npy", labels.astype(np.uint8))

# Bad files: a NaN at row 17, column 2; Fortran order; a truncated archive member.
bad = x.copy()
bad[17, 2] = np.nan
np.save(out / "nan-x.npy", bad)
np.save(out / "fortran-x.npy", np.asfortranarray(x))
data = (out / "table-x.npy").read_bytes()
(out / "truncated-x.npy").write_bytes(data[: len(data) - 100])
