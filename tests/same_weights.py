#!/usr/bin/env python3
"""Exits 0 when two robustlab checkpoints hold the same weights and curves bit for bit (the per-epoch
timings aside), else names what differs. tests/distributed_launch.sh and tests/slurm_sweep.sh use it.

    tests/same_weights.py A.h5 B.h5
"""
import sys

import h5py
import numpy as np

a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = ["state/" + k for k in a["state"]] + ["history/" + k for k in a["history"] if k not in ("seconds", "comm_seconds")]
bad = [n for n in names if n not in b or not np.array_equal(np.asarray(a[n]), np.asarray(b[n]))]
sys.exit(f"{sys.argv[1]} and {sys.argv[2]} differ: {bad}" if bad else 0)
