#!/usr/bin/env python3
"""Checks, with h5py and without robustlab, that an experiment results file has the layout docs/results-format.md
documents. Usage: h5py_layout.py RESULTS.h5; exit 0 when it does, 1 with the first problem otherwise."""
import sys

import h5py


def main(path):
    f = h5py.File(path, "r")
    for key in ("format", "config", "config_hash", "robustlab_version", "libtorch_version", "device", "started", "finished"):
        assert key in f.attrs, f"root attribute {key} missing"
    assert f.attrs["format"] == "robustlab-experiment-1", f.attrs["format"]
    seeds = list(f["seeds"][()])
    for arm in f["arms"]:
        for seed in seeds:
            g = f[f"arms/{arm}/seed_{seed}"]
            ev = g["eval"]
            n, e = ev["labels"].shape[0], ev["eps"].shape[0]
            assert ev["worst_robust"].shape == (n, e)
            assert 0.0 <= ev.attrs["clean_accuracy"] <= 1.0
            assert list(ev["worst_accuracy"][()]) == sorted(ev["worst_accuracy"][()], reverse=True), "worst case rises with eps"
            for attack in ev["attacks"]:
                a = ev[f"attacks/{attack}"]
                assert a["robust"].shape == (n, e)
                assert a["examples"].dtype == "float32"
            assert len(ev["sanity/names"]) == len(ev["sanity/passed"])
            assert "loss" in g["train"]
        s = f[f"summary/{arm}"]
        assert s.attrs["n_seeds"] == len(seeds)
        for stat in ("mean", "std", "ci_low", "ci_high"):
            assert s[f"worst_accuracy_{stat}"].shape == (e,)
    for comp in f.get("comparisons", {}):
        c = f[f"comparisons/{comp}"]
        for key in ("mean_difference", "paired_p", "mcnemar_p"):
            assert c[key].shape == (e,), key
    print(f"{path}: layout ok ({len(f['arms'])} arms, {len(seeds)} seeds)")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except (AssertionError, KeyError) as err:
        print(f"{sys.argv[1]}: layout problem: {err}")
        sys.exit(1)
