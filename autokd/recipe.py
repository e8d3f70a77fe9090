"""How a network is trained, whatever its budget: the one declaration of every recipe setting (type, range, help and
default), shared by search (`SearchSettings`), retrain (`RetrainSettings`), the teachers' recipes and training itself
(`TrainConfig` adds the budget). Defaults are the NAGO reference's search-time recipe (batch 128, SGD 0.1, momentum
0.9, weight decay 1e-4 on every parameter, crop + flip, cosine); presets change values, never declarations.

Adding a recipe setting: declare it here, read it in `autokd.train`; the flag, the checks, presets, experiment files,
run.json, best.json and the retrain records follow from the declaration. Give it `neutral=` (the value that trains as
before it existed) so that results recorded earlier still match (`autokd.validate.identity`): the settings marked so
below came to retrain after its first release (it trained with cosine, no Nesterov, no auxiliary head).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from autokd.optim import OPTIMIZERS
from autokd.validate import Field, setting

if TYPE_CHECKING:
    from autokd.data.augment import Augment

SCHEDULES = ("cosine", "step", "wsd")
SPEEDS = ("auto", "eager", "channels_last", "compile")  # autokd.speed
PRECISIONS = ("auto", "fp32", "bf16")  # autokd.accel.autocast


@dataclass(frozen=True, kw_only=True)
class Recipe:
    batch_size: int = setting(128, Field("int", min=1, max=65_536), "training batch")
    opt: str = setting("sgd", Field("str", choices=tuple(OPTIMIZERS)),
                       "training optimizer (autokd/optim.py): sgd with momentum (the reference), or adamw (give it "
                       "--lr about 1e-3)", neutral="sgd")
    lr: float = setting(0.1, Field("float", above=0, max=100), "learning rate (SGD's 0.1; AdamW's about 1e-3)")
    momentum: float = setting(0.9, Field("float", min=0, max=0.999), "SGD momentum", flag=False)
    nesterov: bool = setting(False, Field("bool"), "Nesterov momentum", flag=False, neutral=False)
    weight_decay: float = setting(1e-4, Field("float", min=0, max=1),
                                  "weight decay (L2 on the parameters of --weight-decay-scope)")
    weight_decay_scope: str = setting("all", Field("str", choices=("all", "weights")),
                                      "decay every parameter (the reference) or weights only (not BatchNorm, biases, "
                                      "gates)")
    lr_schedule: str = setting("cosine", Field("str", choices=SCHEDULES),
                               "cosine annealed to each budget, the NAGO reference's StepLR(lr_step_epochs, "
                               "lr_step_gamma), or wsd: constant, then linear to 0 over the last --lr-decay-fraction "
                               "of each budget", neutral="cosine")
    lr_step_epochs: float = setting(20.0, Field("float", above=0, max=100_000),
                                    "step: multiply the learning rate by lr_step_gamma every this many epochs",
                                    flag=False, neutral=20.0)
    lr_step_gamma: float = setting(0.5, Field("float", above=0, max=1), "step: the factor", flag=False,
                                   neutral=0.5)
    lr_decay_fraction: float = setting(0.2, Field("float", min=0.05, max=0.9),
                                       "wsd: the decaying share of each budget", neutral=0.2)
    label_smoothing: float = setting(0.0, Field("float", min=0, max=0.5),
                                     "smoothing of the hard-label cross entropy (0: none; with KD it smooths the "
                                     "(1 - alpha) term only)", neutral=0.0)
    kd_loss: str = setting("hinton", Field("str", choices=("hinton", "dkd", "dist", "at")),
                           "the distillation term (autokd/kd/loss.py): hinton (KL of softened outputs, the "
                           "paper's), dkd (decoupled KD), dist (DIST: correlation of outputs) or at (attention "
                           "transfer: the teacher's spatial attention maps; needs a teacher that exposes its feature "
                           "maps, as the built-in ones do); a step's loss is (1 - alpha)·CE + alpha·that",
                           neutral="hinton")
    dkd_alpha: float = setting(1.0, Field("float", min=0, max=100), "dkd: weight of the target-class part (TCKD)",
                               neutral=1.0)
    dkd_beta: float = setting(8.0, Field("float", min=0, max=100), "dkd: weight of the non-target part (NCKD)",
                              neutral=8.0)
    dist_beta: float = setting(1.0, Field("float", min=0, max=100), "dist: weight of the inter-class relation",
                               neutral=1.0)
    dist_gamma: float = setting(1.0, Field("float", min=0, max=100), "dist: weight of the intra-class relation",
                                neutral=1.0)
    at_beta: float = setting(1000.0, Field("float", min=0, max=1e6),
                             "at: weight β of the attention maps' squared difference (the paper's 1000)",
                             neutral=1000.0)
    grad_clip: float | None = setting(None, Field("float", above=0, nullable=True),
                                      "max global gradient norm (None: no clipping)", flag=False)
    augment_pad: int = setting(4, Field("int", min=0, max=64), "random-crop padding in pixels (0: no crop)")
    augment_flip: bool = setting(True, Field("bool"), "random horizontal flips", flag=False)
    cutout: int = setting(0, Field("int", min=0, max=1024), "cutout square side in pixels (0: none)", flag=False)
    aux_weight: float = setting(0.0, Field("float", min=0, max=10),
                                "weight of an auxiliary head's cross entropy (DARTS: 0.4)", flag=False, neutral=0.0)
    drop_path: float = setting(0.0, Field("float", min=0, max=1),
                               "final drop-path probability, ramped linearly over the epochs (DARTS: 0.2)", flag=False,
                               neutral=0.0)
    speed: str = setting("auto", Field("str", choices=SPEEDS),
                         "how a training step runs on a CPU, same fp32 arithmetic: auto (probe the memory layouts on "
                         "this machine, and torch.compile too for runs of >= 1,500 steps, keeping the fastest), "
                         "eager (the fused modules), channels_last, or compile", same_result=True)
    precision: str = setting("auto", Field("str", choices=PRECISIONS),
                             "the arithmetic of forward passes: auto (bf16 autocast on CUDA, fp32 on a CPU), fp32, or "
                             "bf16 (autocast on a CPU too: about 2x a step where the CPU has native bf16, e.g. "
                             "avx512_bf16 or AMX, and several times slower where it has not; it changes the "
                             "arithmetic, so check the accuracy)", neutral="auto")
    eval_batch_size: int = setting(1000, Field("int", min=1, max=1_000_000), "validation batch", flag=False,
                                   same_result=True)

    @property
    def augment(self) -> Augment:
        from autokd.data.augment import Augment  # torch: imported where training happens, not where flags parse

        return Augment(pad=self.augment_pad, flip=self.augment_flip, cutout=self.cutout)


RECIPE_KEYS = tuple(f.name for f in fields(Recipe))


def recipe_of(obj: Any) -> Recipe:
    """The recipe part of anything that contains one (search or retrain settings, a train config)."""
    return Recipe(**{k: getattr(obj, k) for k in RECIPE_KEYS})


@dataclass(frozen=True)
class KDConfig:
    """Hinton's KD loss parameters; the defaults are the standard setting (τ = 4, α = 0.9) that hand-designed
    baselines and a generator file without `kd` get."""

    temperature: float = 4.0
    alpha: float = 0.9


DEFAULT_KD = KDConfig()
