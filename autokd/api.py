"""autokd as a library: the calls the CLI makes, with typed arguments and results instead of flags and printed
lines (the CLI parses, calls these or the modules under them, and prints). Bad input raises `autokd.UserError` with
the same one-line message the CLI prints; nothing here reads `sys.argv` or exits the process.

    import autokd
    run = autokd.search("fashion-mnist", preset="cpu", run_dir="runs/search")
    print(run.incumbent.val_acc, run.best.generator)
    summary = autokd.retrain(run.run_dir / "best.json")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autokd.config import RETRAIN_FIELDS, SETTING_FIELDS, SearchSettings, check_device
from autokd.errors import UserError
from autokd.progress import Board
from autokd.hpo.journal import read_journal
from autokd.hpo.loop import incumbent
from autokd.hpo.rundir import load_run as _load_run_json
from autokd.hpo.trial import TrialResult
from autokd.space.genfile import GeneratorFile, load_generator


@dataclass(frozen=True)
class Run:
    """A search's run directory as data: its settings, every evaluation (journal order), its best.json."""

    run_dir: Path
    settings: SearchSettings
    trials: tuple[TrialResult, ...]  # finished and failed evaluations (environment failures are not results)
    best: GeneratorFile | None  # best.json: the winning generator, τ/α, and in `source` the winning trial
    complete: bool  # the search sealed its journal (every bracket done)

    @property
    def incumbent(self) -> TrialResult | None:
        """The best evaluation: highest budget first, then highest validation accuracy."""
        return incumbent(list(self.trials))


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory (of this release or an earlier one). Raises UserError when it holds no valid run."""
    from autokd.config import settings_from_dict

    run_dir = Path(run_dir)
    run = _load_run_json(run_dir)
    settings = settings_from_dict(run["settings"], f"{run_dir}/run.json")
    events = read_journal(run_dir / "journal.jsonl")[1] if (run_dir / "journal.jsonl").is_file() else []
    trials = tuple(TrialResult.from_json(e) for e in events if e.get("event") in ("finished", "failed"))
    best = load_generator(str(run_dir / "best.json")) if (run_dir / "best.json").is_file() else None
    return Run(run_dir, settings, trials, best, any(e.get("event") == "search_finished" for e in events))


def _check_names(given: dict[str, Any], table: dict[str, Any], what: str) -> None:
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise UserError(f"{what}: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(table))}")


def search(dataset: str | None = None, *, preset: str | None = None, experiment: str | None = None,
           run_dir: str | Path = "runs/search", quiet: bool = True, dry_run: bool = False, yes: bool = False,
           **settings: Any) -> Run | None:
    """Run a search, as `autokd search` does: settings in the one override order (the preset's values, paper by
    default < the experiment file's `search:` section < `settings`, any `SearchSettings` field such as
    `iterations=3`, `lr=0.05`, `no_kd=True`), into a new `run_dir`. Returns the finished run (None with
    `dry_run`, which prints the plan and writes nothing). Raises UserError for bad settings or a run directory that
    holds another run (continue that with `resume`)."""
    from autokd.config import search_settings
    from autokd.hpo.run import run_search

    given = {**settings, **({"dataset": dataset} if dataset else {})}
    _check_names(given, SETTING_FIELDS, "autokd.search")
    outcome = run_search(search_settings(given, preset, experiment), run_dir, quiet=quiet, dry_run=dry_run, yes=yes)
    return None if dry_run else load_run(outcome.run_dir)


def resume(run_dir: str | Path, *, iterations: int | None = None, quiet: bool = True) -> Run:
    """Continue a stopped search with the settings in its run.json (`iterations` may grow to extend it). Nothing
    finished is run again."""
    from autokd.hpo.run import run_search

    outcome = run_search(None, run_dir, resume=True, quiet=quiet, overrides={"iterations": iterations})
    return load_run(outcome.run_dir)


def _run_preset(gen: GeneratorFile | None) -> str | None:
    """The preset of the search that wrote a best.json (its run.json says), so retrain follows it."""
    import json

    run_dir = (gen.source or {}).get("run_dir") if gen else None
    if not run_dir:
        return None
    try:
        return json.loads((Path(run_dir) / "run.json").read_text()).get("settings", {}).get("preset")
    except (OSError, ValueError):
        return None


def retrain(generator: str | Path | None = None, *, student: str | None = None, out: str | Path | None = None,
            preset: str | None = None, experiment: str | None = None, no_kd: bool = False,
            board: Board | None = None, **settings: Any) -> dict[str, Any]:
    """Train samples of a searched family (`generator`: a best.json; its winner is sample 0) or of a hand-designed
    `student`, as `autokd retrain` does, into `out` (default: retrain/ next to the generator file). Settings: the
    preset's retrain values (`preset`, else the experiment file's `preset:`, else the search's) < the experiment
    file's `retrain:` section < `settings` (any `RetrainSettings` field). Returns summary.json's content: test
    accuracy mean ± std, per sample, and the comparison with the hand-designed baselines."""
    from autokd.config import load_experiment
    from autokd.retraining import run_retrain, settings_for

    _check_names(settings, RETRAIN_FIELDS, "autokd.retrain")
    check_device(settings.get("device"))
    if not generator and not student:
        raise UserError("give --generator RUN_DIR/best.json (a searched family) or --student NAME (a hand-designed "
                        "one)")
    gen = load_generator(str(generator)) if generator else None
    exp = load_experiment(experiment) if experiment else {}
    section = (exp.get("retrain") or {}) if experiment else None
    overrides = {k: v for k, v in {**settings, "student": student}.items() if v is not None}
    if no_kd:
        overrides["alpha"] = 0.0
    if preset == "smoke":
        overrides["smoke_teacher"] = True
    # the preset: the flag's, else the experiment file's (it was written for one), else the search's run.json's
    st = settings_for(gen, overrides, preset or exp.get("preset") or _run_preset(gen), section)
    folder = Path(out) if out else (Path(generator).resolve().parent / "retrain" if generator
                                    else Path("runs") / f"retrain-{student}")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file; give a folder")
    if st.ray_address and st.executor == "local":
        raise UserError("--ray-address goes with --executor ray (or auto, the default)")
    if st.executor_kind() == "ray":
        from autokd.ray_cluster import join

        join(st.ray_address)  # checked in seconds and joined before anything is written
    own = board is None
    board = board or Board(quiet=True)
    try:
        return run_retrain(gen, st, folder, board) | {"out": str(folder)}
    finally:
        if own:
            board.close()


def load_student(path: str | Path) -> Any:
    """A trained student from retrain's `student.pt` (a searched architecture or a hand-designed one), in eval mode,
    with `.mean` / `.std` (its input normalisation, per channel, for images scaled to [0, 1]) and `.test_acc`.
    Raises UserError for a file that is not such a checkpoint."""
    import torch

    from autokd.nn.handmade import HANDMADE
    from autokd.nn.student import build_student
    from autokd.retraining import STUDENT_FORMAT
    from autokd.space.spec import arch_from_json

    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path} not found; give a retrain sample's student.pt") from None
    except Exception as exc:  # a torn or foreign file
        raise UserError(f"{path} is not a readable student checkpoint ({type(exc).__name__}); give a retrain "
                        "sample's student.pt") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != STUDENT_FORMAT:
        raise UserError(f"{path} is not an {STUDENT_FORMAT} checkpoint; give a retrain sample's student.pt")
    arch = ckpt["arch"]
    if "handmade" in arch:
        shape = arch["input_shape"]
        model = HANDMADE[arch["handmade"]].build(int(shape[0]), int(arch["num_classes"]), int(arch["width"]))
    else:
        model = build_student(arch_from_json(arch))
    model.load_state_dict(ckpt["state_dict"])
    model.mean, model.std, model.test_acc = tuple(ckpt["mean"]), tuple(ckpt["std"]), ckpt.get("test_acc")
    return model.eval()
