"""One way to make a trained, scored student: (architecture, data, recipe and budget, teacher) in, a trained network
and its scores out. Search trials (autokd.hpo.trial), retrain samples (autokd.retraining) and `autokd evaluate`
(autokd.evaluate) all call `prepare` then `fit`; what differs between them is only what they pass in and what they
record of the result.

The order of what draws from torch's global generator is fixed here, once: the teacher first (building one
initialises a module; a per-process memo may skip it), then `torch.manual_seed(seed)`, then the student — so a
student's initial weights and its dropout masks depend on its seed alone, whichever caller made it and whatever that
process built before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

import torch
from torch import nn

from autokd.data.dataset import Dataset, load_dataset, train_val_split
from autokd.data.readers import ImageSet
from autokd.memo import Memo
from autokd.recipe import KDConfig
from autokd.train import Checkpointing, EvalResult, Progress, TeacherFn, TrainConfig, pick_device, \
    train_and_evaluate

__all__ = ["Architecture", "DataSplit", "TeacherSource", "Student", "prepare", "fit", "make_teacher"]


@dataclass(frozen=True)
class Architecture:
    """What to build, exactly one of: a generator's θ (sampled with `seed` under `param_limit`), a fixed architecture
    (an `autokd.space.spec.ArchSpec`), or a hand-designed student by name (the widest under `param_limit`)."""

    seed: int  # the architecture's seed (a generator's sample) and the initial weights' seed
    generator: Mapping[str, Any] | None = None
    merge_width: str = "cell"
    spec: Any = None  # ArchSpec
    handmade: str | None = None
    param_limit: int | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.generator, self.spec, self.handmade)]
        if sum(given) != 1:
            raise ValueError("an Architecture is exactly one of generator, spec or handmade")


@dataclass(frozen=True)
class DataSplit:
    """Which images train and which score: a seeded validation split of the training set (search trials, evaluate)
    or all training images scored on the test set (retrain; `subset` then keeps a seeded subset of the training
    images)."""

    scored_on: Literal["validation", "test"]
    seed: int = 0
    val_fraction: float = 0.1
    subset: int | None = None
    val_images: int | None = None

    def apply(self, ds: Dataset) -> tuple[ImageSet, ImageSet]:
        if self.scored_on == "validation":
            return train_val_split(ds.train, self.val_fraction, self.seed, self.subset, self.val_images)
        train = ds.train
        if self.subset:
            perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            train = train.subset(perm[:self.subset])
        return train, ds.test

    def training_rows(self) -> "DataSplit":
        """The part of the split that decides which images train (what a logit cache's rows map to): the seed does
        not matter to a test split that trains on every image."""
        if self.scored_on == "test" and not self.subset:
            return DataSplit("test")
        return self


@dataclass(frozen=True)
class TeacherSource:
    """Any teacher `--teacher` accepts (a built-in name, a file, module:callable, or several comma-joined), and how
    its logits reach the student: from the per-view logit cache (`cached`), or a forward per step."""

    path: str
    weights: str | None = None
    smoke: bool = False  # a built-in teacher missing for this dataset is trained with the smoke recipe
    cached: bool = False


@dataclass
class Student:
    """A student ready to train: its network (initialised from the architecture's seed), data, recipe at a budget,
    and teacher. A caller may adjust `cfg` (a search's continued rung adds its trunk) before `fit`."""

    ds: Dataset
    train: ImageSet
    scored: ImageSet  # validation or test images (DataSplit.scored_on)
    model: nn.Module
    arch_id: str
    arch_json: dict[str, Any]
    macs: int | None  # per image; None: counted by the trainer (hand-designed students)
    cfg: TrainConfig
    device: str | None
    teacher: TeacherFn | None = None
    teacher_fingerprint: str | None = None
    kd: KDConfig | None = None
    spec: Any = None  # the ArchSpec of a generated or loaded architecture; None for a hand-designed one


# per process: the search's trials share one teacher (and its logit cache); two at a time at most (a feature loss's
# on-the-fly teacher beside a cache)
TEACHERS = Memo("teacher functions", max_items=2)


def make_teacher(source: TeacherSource, ds: Dataset, train: ImageSet, split: DataSplit, cfg: TrainConfig,
                 device: str | None) -> tuple[TeacherFn, str]:
    """(teacher function, fingerprint): logits for exactly the student's views, from the cache when the source asks
    for it and the loss needs no feature maps. Kept per process, keyed by everything the cache rows depend on."""
    from autokd.kd.loss import needs_features
    from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher

    cached = source.cached and not needs_features(cfg.kd_loss)
    key = (source, ds.info.name, str(device), cached, split.training_rows(), cfg.augment)

    def build() -> tuple[TeacherFn, str]:
        teacher = resolve_teacher(source.path, ds, smoke=source.smoke, device=device, quiet=True,
                                  weights=source.weights)
        if not cached:
            return OnTheFlyTeacher(teacher, ds.info.mean, ds.info.std), teacher.fingerprint
        from autokd.kd.cache import CachedTeacher, load_or_build

        dev = pick_device(device)
        logits, _ = load_or_build(teacher, train, cfg.augment, ds.info.mean, ds.info.std, dev, quiet=True)
        return CachedTeacher(logits, train, train.image_ids(), dev), teacher.fingerprint

    return TEACHERS.get(key, build)


def _build(arch: Architecture, spec: Any, ds: Dataset) -> tuple[nn.Module, str, dict[str, Any], int | None]:
    """(network, arch_id, architecture as JSON, MACs per image) of `spec` (the ArchSpec), or of the hand-designed
    student when there is none; draws the initial weights from torch's global generator, which the caller seeded."""
    from autokd.nn.student import build_student
    from autokd.space.plan import count_macs

    if spec is None:
        from autokd.nn.handmade import build_handmade

        model, width = build_handmade(str(arch.handmade), ds.input_shape, ds.num_classes, int(arch.param_limit or 0))
        return (model, f"{arch.handmade}-w{width}", {"handmade": arch.handmade, "width": width,
                "input_shape": list(ds.input_shape), "num_classes": ds.num_classes}, None)
    return build_student(spec), spec.arch_id, spec.to_json(), count_macs(spec)


def architecture_spec(arch: Architecture, ds: Dataset) -> Any:
    """The ArchSpec a generator samples (or the fixed one given); None for a hand-designed student."""
    if arch.generator is not None:
        from autokd.space.generator import sample_architecture

        return sample_architecture(arch.generator, arch.seed, ds.input_shape, ds.num_classes,
                                   int(arch.param_limit or 0), merge=arch.merge_width)
    return arch.spec


def prepare(arch: Architecture, dataset: str | Dataset, split: DataSplit, cfg: TrainConfig, *,
            teacher: TeacherSource | None = None, kd: KDConfig | None = None, device: str | None = None,
            data_dir: str | None = None, init_seed: int | None = None) -> Student:
    """Load the data, sample or load the architecture, split, make the teacher (when `kd` distils: α > 0), seed and
    build the network: its initial weights from `init_seed` (None: the architecture's seed; a study that trains
    every budget from scratch with its own seed gives one). Raises InvalidGenerator for a θ that makes no network,
    DatasetError/TeacherError for bad files."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    spec = architecture_spec(arch, ds)
    train, scored = split.apply(ds)
    distil = teacher is not None and kd is not None and kd.alpha > 0
    teacher_fn, fingerprint = make_teacher(teacher, ds, train, split, cfg, device) if distil else (None, None)
    torch.manual_seed(arch.seed if init_seed is None else init_seed)  # after the teacher: see the module docstring
    model, arch_id, arch_json, macs = _build(arch, spec, ds)
    return Student(ds=ds, train=train, scored=scored, model=model, arch_id=arch_id, arch_json=arch_json, macs=macs,
                   cfg=cfg, device=device, teacher=teacher_fn, teacher_fingerprint=fingerprint,
                   kd=kd if distil else None, spec=spec)


def fit(student: Student, progress: Progress | None = None,
        checkpointing: Checkpointing | None = None) -> EvalResult:
    """Train the student with its recipe at its budget (KD when it has a teacher) and score it on its scored images.
    A configuration's own failure (NaN loss, out of memory) is a result with status "failed"; a programming error
    raises (autokd.train.train_and_evaluate)."""
    return train_and_evaluate(student.model, student.train, student.scored, student.ds.info.mean,
                              student.ds.info.std, student.cfg, device=student.device, teacher=student.teacher,
                              kd=student.kd, macs=student.macs, progress=progress, checkpointing=checkpointing)
