#!/usr/bin/python3
"""Whether two experiment results files hold identical numbers.

  tests/compare_results.py A.h5 B.h5 [GROUP ...]     (default groups: /summary /comparisons /arms)

Compares every dataset under the groups, bit for bit (NaN equal to NaN), and the numeric attributes
of those groups' members; wall-clock times (names holding "seconds") are not numbers of the
experiment and are skipped. Prints each difference and a count; exit 1 when any.
"""
import sys

import h5py
import numpy as np


def items(f, group):
    out = {}
    if group not in f:
        return out

    def visit(name, obj):
        if "seconds" in name.split("/")[-1]:
            return
        if isinstance(obj, h5py.Dataset):
            out[name] = ("dataset", obj[()])
        for k, v in obj.attrs.items():
            if "seconds" in k or isinstance(v, (str, bytes)):
                continue
            out[name + "@" + k] = ("attr", v)

    f[group].visititems(visit)
    return out


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    groups = sys.argv[3:] or ["/summary", "/comparisons", "/arms"]
    diffs = compared = 0
    with h5py.File(sys.argv[1], "r") as fa, h5py.File(sys.argv[2], "r") as fb:
        for g in groups:
            a, b = items(fa, g), items(fb, g)
            for name in sorted(set(a) | set(b)):
                compared += 1
                if name not in a or name not in b:
                    print(f"{g}/{name}: only in {'the first' if name in a else 'the second'} file")
                    diffs += 1
                elif not same(a[name][1], b[name][1]):
                    print(f"{g}/{name}: differs")
                    diffs += 1
    print(f"{compared} datasets and attributes compared under {' '.join(groups)}: {diffs} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
