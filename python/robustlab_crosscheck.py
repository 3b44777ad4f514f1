#!/usr/bin/env python3
"""Cross-check one of robustlab's evaluations with an independent implementation, example by example.

    python3 python/robustlab_crosscheck.py RESULTS.h5 [--arm A] [--seed S] [--attack pgd]
                                           [--with torchattacks | autoattack | FILE.py] [--n N] [--batch B]

RESULTS.h5 is what `robustlab run` (an arm x seed: --arm, --seed) or `robustlab attack --checkpoint` wrote.
The kept model is loaded in PyTorch (python/robustlab_io.py) and evaluated on the very test images robustlab
evaluated, in the same order; its clean predictions must equal robustlab's stored ones. Then the other
implementation attacks them at every eps > 0 of the stored grid with robustlab's settings (steps, step size,
random start), and the robust accuracy of both sides and their per-example agreement are printed.

The other implementation is the user's, never shipped with robustlab:
  --with torchattacks   torchattacks.PGD / PGDL2 (pip install torchattacks), against robustlab's `pgd`
  --with autoattack     fra31/auto-attack's standard AutoAttack (pip install git+https://github.com/fra31/auto-attack,
                        or a checkout on PYTHONPATH), against robustlab's `autoattack` (run it with --attack autoattack)
  --with FILE.py        a file defining attack(model, x, y, eps, norm, steps, step_size, random_start, seed) -> x_adv
Exit status: 0 when it ran (agreement is printed, not judged), 2 when the implementation is not importable.
"""
import argparse
import importlib.util
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import robustlab_io  # noqa: E402


def step_size_of(attack_cfg, eps, steps):
    """robustlab's PGD step: step_size when set, else rel_step_size (default 2.5 / steps) times eps."""
    if attack_cfg.get("step_size", 0) > 0:
        return float(attack_cfg["step_size"])
    rel = attack_cfg.get("rel_step_size", 0)
    return (rel if rel > 0 else 2.5 / steps) * eps


def reference(name):
    """The other implementation's attack(model, x, y, eps, norm, steps, step_size, random_start, seed) -> x_adv."""
    if name == "torchattacks":
        import torchattacks

        def run(model, x, y, eps, norm, steps, step_size, random_start, seed):
            torch.manual_seed(seed)
            cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
            return cls(model, eps=eps, alpha=step_size, steps=steps, random_start=random_start)(x, y)
        return run
    if name == "autoattack":
        from autoattack import AutoAttack

        def run(model, x, y, eps, norm, steps, step_size, random_start, seed):
            adversary = AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version="standard", seed=seed, device="cpu")
            adversary.verbose = False
            # The targeted members' 9 targets capped at classes - 1, as robustlab caps them (a 5-class task has 4).
            with torch.no_grad():
                classes = model(x[:1]).shape[1]
            adversary.apgd_targeted.n_target_classes = min(9, classes - 1)
            adversary.fab.n_target_classes = min(9, classes - 1)
            return adversary.run_standard_evaluation(x, y, bs=len(x))
        return run
    spec = importlib.util.spec_from_file_location("crosscheck_reference", name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.attack


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--arm")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--attack", default=None, help="robustlab's attack to compare with (default: pgd, autoattack for --with autoattack)")
    ap.add_argument("--with", dest="impl", default="torchattacks")
    ap.add_argument("--n", type=int, default=0, help="the first N evaluated images only (0: all)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--json", help="also write the agreement per eps to this file")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        attack = reference(args.impl)
    except ImportError as e:
        print(f"crosscheck: {args.impl} is not importable here ({e}); install it or put it on PYTHONPATH", file=sys.stderr)
        return 2
    stored = args.attack or ("autoattack" if args.impl == "autoattack" else "pgd")
    ev = robustlab_io.evaluated(args.results, args.arm, args.seed)
    model, x, y = ev["model"], ev["images"], ev["labels"]
    with h5py.File(args.results, "r") as f:
        g = f[ev["eval"]]
        if f"attacks/{stored}" not in g:
            print(f"crosscheck: {args.results}: robustlab did not run '{stored}' here (attacks: {', '.join(g['attacks'])})", file=sys.stderr)
            return 1
        eps = np.array(g[f"attacks/{stored}/eps"])
        ours = np.array(g[f"attacks/{stored}/robust"]).astype(bool)  # N x E
        clean_pred = np.array(g["clean_pred"])
    n = len(y) if args.n <= 0 else min(args.n, len(y))
    x, y, ours, clean_pred = x[:n], y[:n], ours[:n], clean_pred[:n]
    with torch.no_grad():
        pred = torch.cat([model(x[b:b + args.batch]).argmax(1) for b in range(0, n, args.batch)]).numpy()
    same_clean = int((pred == clean_pred).sum())
    cfg = ev["config"].get("attack", {})
    norm, steps = cfg.get("norm", "linf"), int(cfg.get("steps", 20))
    random_start, seed = bool(cfg.get("random_start", True)), int(ev["config"].get("seed", 0))
    name = ev["eval"]
    print(f"{args.results} {name}: {n} test images (indices {ev['indices'][:3].tolist()}...), model {ev['checkpoint']}")
    print(f"clean predictions equal to robustlab's: {same_clean} of {n}")
    budget = "each side's AutoAttack budget" if args.impl == "autoattack" else f"{steps} steps, random start {random_start}"
    print(f"robustlab '{stored}' against {args.impl}, {norm}, {budget}")
    print(f"{'eps':>8} {'robustlab %':>12} {'other %':>9} {'agree %':>8} {'only robustlab robust':>22} {'only other robust':>18}")
    rows = []
    for e, value in enumerate(eps):
        if value == 0:
            continue
        adv = torch.cat([attack(model, x[b:b + args.batch], y[b:b + args.batch], float(value), norm, steps,
                                step_size_of(cfg, float(value), steps), random_start, seed) for b in range(0, n, args.batch)])
        with torch.no_grad():
            theirs = torch.cat([model(adv[b:b + args.batch]).argmax(1) for b in range(0, n, args.batch)]).eq(y).numpy()
        agree = float((theirs == ours[:, e]).mean())
        row = {"eps": float(value), "robustlab": float(ours[:, e].mean()), "other": float(theirs.mean()), "agreement": agree,
               "only_robustlab_robust": int((ours[:, e] & ~theirs).sum()), "only_other_robust": int((~ours[:, e] & theirs).sum())}
        rows.append(row)
        print(f"{value:8.4g} {100 * row['robustlab']:12.2f} {100 * row['other']:9.2f} {100 * agree:8.2f} "
              f"{row['only_robustlab_robust']:22d} {row['only_other_robust']:18d}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"results": args.results, "eval": name, "attack": stored, "with": args.impl, "n": n,
                       "same_clean_predictions": same_clean, "per_eps": rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
