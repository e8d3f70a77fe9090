"""Same recipe, same accuracy? Two retrains of the same architectures and seeds — e.g. before and after a speed lever
(issue 33) — paired by (group, seed): the per-pair test-accuracy difference, its mean with a paired t 95% CI, and
the seconds per sample of each.

    python benchmarks/same_accuracy.py OLD_RETRAIN_DIR NEW_RETRAIN_DIR [--old-resnet 92.69,92.82,92.82]

A folder is a retrain output (summary.json, baseline-NAME/summary.json) or a folder of sample-NN.json files (as
committed under docs/deploy/). `--old-resnet` gives the old baseline's accuracies in seed order when only its
figures were kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from autokd.compare import paired_difference  # noqa: E402


def samples(folder: Path) -> dict[tuple[str, int], dict]:
    """(group, seed) → sample record, from a retrain folder's summaries or committed sample-NN.json files."""
    out = {}
    if (folder / "summary.json").is_file():
        for group, path in [("family", folder / "summary.json")] + [
                (p.parent.name.removeprefix("baseline-"), p) for p in sorted(folder.glob("baseline-*/summary.json"))]:
            for r in json.loads(path.read_text())["per_sample"]:
                if r.get("status") == "ok":
                    out[(group, int(r["seed"]))] = r
    for p in sorted(folder.glob("sample-*.json")):
        r = json.loads(p.read_text())
        out.setdefault(("family", int(r["seed"])), r)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--old-resnet", help="the old ResNet-8 baseline's test accuracies (%%), seeds 0, 1, 2, ...")
    args = ap.parse_args()
    old, new = samples(Path(args.old)), samples(Path(args.new))
    if args.old_resnet:
        for seed, acc in enumerate(float(a) for a in args.old_resnet.split(",")):
            old.setdefault(("resnet", seed), {"test_acc": acc / 100, "seconds": None})
    pairs = sorted(set(old) & set(new))
    if len(pairs) < 2:
        print(f"fewer than 2 pairs in common ({len(pairs)}); nothing to compare", file=sys.stderr)
        return 2
    print("| group | seed | old test | new test | new − old (points) | old s | new s | new plan |")
    print("|---|---|---|---|---|---|---|---|")
    for key in pairs:
        o, n = old[key], new[key]
        plan = n.get("speed") or {}
        how = (plan.get("layout", "?") + (" compiled" if plan.get("compiled") else "")) if plan else "-"
        print(f"| {key[0]} | {key[1]} | {100 * o['test_acc']:.2f}% | {100 * n['test_acc']:.2f}% | "
              f"{100 * (n['test_acc'] - o['test_acc']):+.2f} | {o.get('seconds') or 0:.0f} | {n['seconds']:.0f} | "
              f"{how} |")
    d = paired_difference("new − old", [new[k]["test_acc"] for k in pairs], [old[k]["test_acc"] for k in pairs])
    print(f"\nnew − old: {d.diff:+.2f} points [{d.ci_low:+.2f}, {d.ci_high:+.2f}] (95% CI, paired t, p = "
          f"{d.p_value:.2f}, {d.n} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
