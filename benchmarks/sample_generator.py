"""Sampling cost and size spread of the generator: 200 random θ from the nago space at a given shape.

    python benchmarks/sample_generator.py [--n 200] [--shape 3,32,32] [--classes 100] [--limit 4000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from autokd.errors import InvalidGenerator
from autokd.space.configspace import THETA_KEYS, config_to_plain, load_space
from autokd.space.generator import sample_architecture
from autokd.space.genfile import load_generator
from autokd.space.plan import count_macs, count_parameters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--shape", default="3,32,32")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--limit", type=int, default=4_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shape = tuple(int(x) for x in args.shape.split(","))
    cs = load_space("nago").to_configspace(seed=args.seed)
    params, secs, invalid = [], [], 0
    for i, cfg in enumerate(cs.sample_configuration(args.n)):
        theta = {k: v for k, v in config_to_plain(cfg).items() if k in THETA_KEYS}
        t0 = time.perf_counter()
        try:
            spec = sample_architecture(theta, i, shape, args.classes, args.limit)
        except InvalidGenerator:
            invalid += 1
            continue
        secs.append(time.perf_counter() - t0)
        params.append(count_parameters(spec))
    default = load_generator("examples/default-generator.json")
    spec = sample_architecture(default.generator, 0, shape, args.classes, args.limit)
    print(json.dumps({
        "shape": list(shape), "classes": args.classes, "limit": args.limit, "n": args.n, "valid": len(params),
        "invalid": invalid, "params_min": min(params), "params_median": int(statistics.median(params)),
        "params_max": max(params), "sample_ms_mean": round(1000 * statistics.mean(secs), 2),
        "sample_ms_max": round(1000 * max(secs), 2), "sample_s_total": round(sum(secs), 2),
        "default_generator": {"arch_id": spec.arch_id, "params": count_parameters(spec),
                              "macs": count_macs(spec), "width": spec.width}}, indent=1))


if __name__ == "__main__":
    main()
