"""The plan of a search, printed before anything heavy starts: brackets, evaluations, epochs, images, and a
projected time from steps measured on this machine."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from autokd.config import SearchSettings
from autokd.errors import UserError
from autokd.ray_cluster import ClusterShape
from autokd.hpo.hyperband import schedule_summary
from autokd.rungs import rungs_of

# Aggregate speed of k single-thread worker processes relative to k × one worker alone (memory bandwidth is
# shared). Measured on the 2-core machines (docs/benchmarks.md: 2 workers gave 1.7× one).
WORKER_EFFICIENCY = 0.85
CPU_REFUSE_HOURS = 3.0  # without CUDA, a plan projected above this stops unless --yes
PROBE_DECIDES = 10.0  # a probe's projection beyond this many times the refusal line is taken as it is
MAX_EVALUATIONS = 100_000  # a plan beyond this is a typo (e.g. --min-budget 1e-9), not a search


def check_size(settings: SearchSettings) -> None:
    """Refuse a schedule of absurd size before anything is planned or written."""
    plan = schedule_summary(settings.budgets(), settings.eta, settings.iterations, settings.bracket_rounding)
    if plan["evaluations"] > MAX_EVALUATIONS:
        raise UserError(f"this plan has {plan['evaluations']:,} evaluations (over {MAX_EVALUATIONS:,}); lower "
                        f"--iterations or narrow the budgets")


LIMIT_PROBES = 200  # configurations drawn to tell whether a cost limit can be met at all


def _probe_costs(settings: SearchSettings, input_shape: tuple[int, ...], num_classes: int, param_limit: int,
                 with_memory: bool) -> list[dict[str, Any]]:
    """MACs (and activation MB) of LIMIT_PROBES architectures drawn from the space with the search's seed."""
    from autokd.deploy import activation_mb
    from autokd.nn.student import build_student
    from autokd.space.configspace import config_to_plain, theta_of
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs

    cs = settings.load_space().with_max_nodes(settings.max_nodes).to_configspace(seed=settings.seed)
    out = []
    for i in range(LIMIT_PROBES):
        try:
            arch = sample_architecture(theta_of(config_to_plain(cs.sample_configuration())), settings.seed + i,
                                       input_shape, num_classes, param_limit, merge=settings.merge_width)
        except Exception:  # an invalid generator is the search's business (a failed trial), not this check's
            continue
        out.append({"arch": arch, "macs": float(count_macs(arch)),
                    "activation_mb": activation_mb(build_student(arch), input_shape) if with_memory else 0.0})
    return out


def check_cost_limits(settings: SearchSettings, input_shape: tuple[int, ...], num_classes: int,
                      param_limit: int) -> tuple[float, float] | None:
    """Refuse --macs-limit/--memory-limit/--latency-limit that no architecture of the space meets (of LIMIT_PROBES
    drawn with the search's seed), before anything is written, saying the least values seen. Returns the least and
    the most the objective's cost takes over the architectures that meet the limits (autokd.hpo.objective scales by
    them), or None when the objective is accuracy alone."""
    from autokd.deploy import student_latency
    from autokd.hpo.objective import COST_KEYS
    from autokd.nn.student import build_student

    cost_key = COST_KEYS.get(settings.objective)
    latency = cost_key == "latency_ms" or settings.latency_limit is not None
    limits = (settings.macs_limit, settings.memory_limit, settings.latency_limit)
    if cost_key is None and all(v is None for v in limits):
        return None
    probes = _probe_costs(settings, input_shape, num_classes, param_limit,
                          settings.memory_limit is not None or cost_key == "activation_mb")
    meeting = [c for c in probes if (settings.macs_limit is None or c["macs"] <= settings.macs_limit)
               and (settings.memory_limit is None or c["activation_mb"] <= settings.memory_limit)]
    if not meeting and probes and (settings.macs_limit is not None or settings.memory_limit is not None):
        said = []
        if settings.macs_limit is not None:
            said.append(f"--macs-limit {settings.macs_limit:,.0f} (the fewest MACs per image seen: "
                        f"{min(c['macs'] for c in probes):,.0f})")
        if settings.memory_limit is not None:
            said.append(f"--memory-limit {settings.memory_limit:g} MB (the least activation memory seen: "
                        f"{min(c['activation_mb'] for c in probes):.3f} MB)")
        raise UserError(f"no architecture of the {settings.space} space at this parameter limit meets "
                        f"{' and '.join(said)} in {LIMIT_PROBES} drawn; raise the limit or lower --param-limit")
    if not meeting:
        return None  # no valid architecture among the probes: the trials will say why
    if latency:  # measured, not counted: on the cheapest and the dearest architectures by MACs (it follows them)
        ends = [min(meeting, key=lambda c: c["macs"]), max(meeting, key=lambda c: c["macs"])]
        lat = [student_latency(build_student(c["arch"]), input_shape)["batch1_ms"] for c in ends]
        if settings.latency_limit is not None and lat[0] > settings.latency_limit:
            raise UserError(f"no architecture of the {settings.space} space at this parameter limit meets "
                            f"--latency-limit {settings.latency_limit:g} ms: the one with the fewest MACs of "
                            f"{LIMIT_PROBES} drawn takes {lat[0]:.3f} ms at batch 1 here; raise the limit")
        if cost_key == "latency_ms":
            return min(lat), max(max(lat), min(lat) * 1.01)
    if cost_key is None:
        return None
    values = [c[cost_key] for c in meeting]
    return min(values), max(values)


@dataclass(frozen=True)
class Plan:
    brackets: int
    evaluations: int
    configurations: int
    epochs: float  # Σ budgets over the evaluations
    train_images: int  # images in one epoch (the training split)
    val_images: int
    workers: int
    threads: int
    device: str
    train_img_s: float | None = None  # one trial, measured here
    eval_img_s: float | None = None
    teacher_img_s: float | None = None  # teacher forwards per second (KD without the logit cache)
    cache_views: int = 0  # views whose teacher logits are computed once (KD with the cache)
    probed: bool = False  # speeds from the quick probe (PROBE_BATCH images a step): the projection errs long

    def seconds(self) -> float | None:
        if not self.train_img_s or not self.eval_img_s:
            return None
        images = self.epochs * self.train_images
        per_trial = images / self.train_img_s + self.evaluations * self.val_images / self.eval_img_s
        if self.teacher_img_s:
            per_trial += images / self.teacher_img_s if not self.cache_views else 0.0
        parallel = self.workers * (WORKER_EFFICIENCY if self.workers > 1 else 1.0)
        cache = self.train_images * self.cache_views / self.teacher_img_s if self.cache_views and \
            self.teacher_img_s else 0.0
        return per_trial / parallel + cache

    def describe(self) -> str:
        secs = self.seconds()
        from autokd.progress import fmt_seconds

        text = (f"plan: {self.brackets} brackets, {self.evaluations} evaluations of {self.configurations} "
                f"configurations, {self.epochs:g} epochs of {self.train_images:,} images "
                f"({self.epochs * self.train_images / 1e6:.2f}M images), {self.val_images:,} validation images each; "
                f"{self.workers} worker(s) × {self.threads} thread(s) on {self.device}")
        if secs is not None:
            text += (f"; measured {self.train_img_s:.0f} training images/s per trial"
                     + (f", teacher {self.teacher_img_s:.0f} images/s" if self.teacher_img_s else "")
                     + f" → projected {fmt_seconds(secs)}" + (" (from a quick probe)" if self.probed else ""))
        return text


def trunk_share(settings: SearchSettings) -> float | None:
    """The share of a budget a higher rung continues (continued rungs), else None (from scratch)."""
    return rungs_of(settings).trunk_share(settings.lr_decay_fraction)


def split_sizes(settings: SearchSettings, n_train: int) -> tuple[int, int]:
    """(training images, validation images) of the search's split (as data.dataset.train_val_split makes it)."""
    n_val = settings.val_images if settings.val_images is not None else max(1, round(n_train * settings.val_fraction))
    train = n_train - n_val
    if settings.subset is not None:
        train = min(train, settings.subset)
        if settings.val_images is None:
            n_val = min(n_val, max(settings.subset // 5, min(100, n_val)))
    return train, n_val


def _time_steps(model: torch.nn.Module, shape: tuple[int, ...], classes: int, batch: int, device: torch.device,
                steps: int = 2) -> float:
    """Training images per second of `model` (forward, backward, SGD step) on random data."""
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)

    def step() -> None:
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if steps == 0 or time.perf_counter() - t0 > 2.0:  # a probe, or a slow model: the first step is enough
        return batch / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch / (time.perf_counter() - t0)


def _time_forward(model: torch.nn.Module, shape: tuple[int, ...], batch: int, device: torch.device) -> float:
    model.to(device).eval()
    x = torch.randn(batch, *shape, device=device)
    with torch.inference_mode():
        model(x)
        t0 = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return batch / (time.perf_counter() - t0)


PROBE_BATCH = 8  # images per step of the quick probe (a 4M-parameter student on a CPU: ≈ 0.5 s a step)


def measure(settings: SearchSettings, shape: tuple[int, int, int], classes: int, param_limit: int,
            device: torch.device, threads: int, teacher_module: torch.nn.Module | None,
            probe: bool = False) -> dict[str, float]:
    """Per-trial speeds on this machine: a few students sampled from the space (median of their rates). With
    `probe`, one student and one step of PROBE_BATCH images each: seconds, not minutes, for a plan whose order of
    magnitude decides (its per-image rate is not the full batch's: 28 against 19 images/s for the paper preset's
    students on the 2-core machine — well inside the factor PROBE_DECIDES)."""
    from autokd.nn.student import build_student
    from autokd.space.configspace import config_to_plain
    from autokd.space.generator import sample_architecture

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cs = settings.load_space().with_max_nodes(settings.max_nodes).to_configspace(seed=settings.seed)
        train_rates, eval_rates = [], []
        started = time.perf_counter()
        for i in range(8 if probe else 3):
            if train_rates and (probe or time.perf_counter() - started > 5.0):
                break  # enough for a projection: its order of magnitude is what decides
            theta = config_to_plain(cs.sample_configuration())
            try:
                spec = sample_architecture(theta, i, shape, classes, param_limit)
            except Exception:
                continue  # an invalid draw: try the next
            model = build_student(spec)
            if probe:
                train_rates.append(_time_steps(model, shape, classes, PROBE_BATCH, device, steps=0))
                eval_rates.append(_time_forward(model, shape, PROBE_BATCH, device))
                continue
            train_rates.append(_time_steps(model, shape, classes, min(settings.batch_size, 256), device))
            eval_rates.append(_time_forward(model, shape, min(settings.eval_batch_size, 1000), device))
        out = {"train_img_s": sorted(train_rates)[len(train_rates) // 2] if train_rates else 0.0,
               "eval_img_s": sorted(eval_rates)[len(eval_rates) // 2] if eval_rates else 0.0}
        if teacher_module is not None:
            batch = PROBE_BATCH if probe else min(settings.batch_size, 256)
            out["teacher_img_s"] = _time_forward(teacher_module, shape, batch, device)
        return out
    finally:
        torch.set_num_threads(saved)


def workers_and_threads(settings: SearchSettings, device: torch.device,
                        cluster: ClusterShape | None = None) -> tuple[int, int]:
    """Trials at once and torch threads per trial. On a CPU: one single-thread worker per core (several
    single-thread trials beat one trial using every core: docs/benchmarks.md); on a GPU the executor decides. On a
    Ray cluster the threads are fitted to its biggest node and the trials at once are what its nodes hold."""
    cores = os.cpu_count() or 1
    if cluster is not None:
        from autokd.ray_cluster import fit_trials

        if cluster.gpus > 0:
            threads, _ = fit_trials(cluster, settings.threads_per_trial or max(1, min(4, cores)))
            return max(1, int(cluster.gpus / settings.gpus_per_trial + 1e-9)), threads
        wanted = settings.threads_per_trial or max(1, cores // (settings.workers or cores))
        threads, at_once = fit_trials(cluster, wanted)
        return at_once, threads
    if device.type == "cuda":
        return settings.workers or 1, settings.threads_per_trial or max(1, min(4, cores))
    workers = settings.workers or (cores if settings.threads_per_trial is None else
                                   max(1, cores // settings.threads_per_trial))
    threads = settings.threads_per_trial or max(1, cores // workers)
    return workers, threads


def make_plan(settings: SearchSettings, n_train: int, shape: tuple[int, int, int], classes: int,
              param_limit: int, device: torch.device, teacher_module: torch.nn.Module | None,
              measure_speed: bool = True, use_cache: bool = False, cluster: ClusterShape | None = None) -> Plan:
    sched = schedule_summary(settings.budgets(), settings.eta, settings.iterations, settings.bracket_rounding,
                             trunk_share(settings))
    train, val = split_sizes(settings, n_train)
    workers, threads = workers_and_threads(settings, device, cluster)
    views = 0
    if use_cache and not settings.no_kd:
        views = (2 if settings.augment_flip else 1) * (2 * settings.augment_pad + 1) ** 2
    where = str(device) if cluster is None else f"a Ray cluster of {len(cluster.node_cpus)} node(s), {device}"
    plan = Plan(int(sched["brackets"]), int(sched["evaluations"]), int(sched["configurations"]),
                float(sched["epochs"]), train, val, workers, threads, where, cache_views=views)
    if not measure_speed:
        return plan
    teacher = teacher_module if not settings.no_kd else None
    # a quick probe first: on a CPU, a plan it puts far beyond the refusal line is refused (or run with --yes) on
    # that figure — measuring a paper-size student at full batch takes minutes for a verdict that is already clear
    rates = measure(settings, shape, classes, param_limit, device, threads, teacher, probe=True)
    probed = replace(plan, **rates, probed=True)
    if device.type != "cuda" and (probed.seconds() or 0.0) > PROBE_DECIDES * CPU_REFUSE_HOURS * 3600:
        return probed
    return replace(plan, **measure(settings, shape, classes, param_limit, device, threads, teacher))
