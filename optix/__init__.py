"""optix: composable, JIT-compiled optimizers for JAX.

An optimizer is a :class:`GradientTransformation`: a pure ``(init, update)`` pair. Small
transforms compose with :func:`chain`; :func:`apply_updates` adds the result to the params.
Transforms produce directions; only :func:`scale_lr` turns a direction into a step (multiplying by
``-learning_rate``), and :func:`apply_updates` only adds.
"""

from optix import schedules as schedules
from optix import sharding as sharding
from optix._apply import apply_updates as apply_updates
from optix._apply import incremental_update as incremental_update
from optix._base import EmptyState as EmptyState
from optix._base import GradientTransformation as GradientTransformation
from optix._base import OptState as OptState
from optix._base import Params as Params
from optix._base import ScalarOrSchedule as ScalarOrSchedule
from optix._base import Schedule as Schedule
from optix._base import Updates as Updates
from optix._base import identity as identity
from optix._base import set_to_zero as set_to_zero
from optix._base import stateless as stateless
from optix._chain import chain as chain
from optix._chain import named_chain as named_chain
from optix._checkpoint import check_state as check_state
from optix._checkpoint import restore_state as restore_state
from optix._hyperparams import HyperparamState as HyperparamState
from optix._hyperparams import get_hyperparams as get_hyperparams
from optix._hyperparams import set_hyperparams as set_hyperparams
from optix._state import format_state as format_state
from optix._state import state_get as state_get
from optix._state import state_paths as state_paths
from optix._state import state_set as state_set
from optix.optimizers._adam import adam as adam
from optix.optimizers._adam import adamax as adamax
from optix.optimizers._adam import adamw as adamw
from optix.optimizers._adam import nadam as nadam
from optix.optimizers._adam import radam as radam
from optix.optimizers._adaptive import adadelta as adadelta
from optix.optimizers._adaptive import adagrad as adagrad
from optix.optimizers._adaptive import rmsprop as rmsprop
from optix.optimizers._sgd import noisy_sgd as noisy_sgd
from optix.optimizers._sgd import sgd as sgd
from optix.transforms._adam import ScaleByAdamaxState as ScaleByAdamaxState
from optix.transforms._adam import ScaleByAdamState as ScaleByAdamState
from optix.transforms._adam import ScaleByNadamState as ScaleByNadamState
from optix.transforms._adam import ScaleByRadamState as ScaleByRadamState
from optix.transforms._adam import scale_by_adam as scale_by_adam
from optix.transforms._adam import scale_by_adamax as scale_by_adamax
from optix.transforms._adam import scale_by_nadam as scale_by_nadam
from optix.transforms._adam import scale_by_radam as scale_by_radam
from optix.transforms._adaptive import ScaleByAdadeltaState as ScaleByAdadeltaState
from optix.transforms._adaptive import ScaleByAdagradState as ScaleByAdagradState
from optix.transforms._adaptive import ScaleByRmsState as ScaleByRmsState
from optix.transforms._adaptive import scale_by_adadelta as scale_by_adadelta
from optix.transforms._adaptive import scale_by_adagrad as scale_by_adagrad
from optix.transforms._adaptive import scale_by_rms as scale_by_rms
from optix.transforms._blockclip import AdaptiveGradClipState as AdaptiveGradClipState
from optix.transforms._blockclip import ClipByBlockRmsState as ClipByBlockRmsState
from optix.transforms._blockclip import adaptive_grad_clip as adaptive_grad_clip
from optix.transforms._blockclip import clip_by_block_rms as clip_by_block_rms
from optix.transforms._clip import ClipByGlobalNormState as ClipByGlobalNormState
from optix.transforms._clip import ClipState as ClipState
from optix.transforms._clip import clip as clip
from optix.transforms._clip import clip_by_global_norm as clip_by_global_norm
from optix.transforms._momentum import ScaleByMomentumState as ScaleByMomentumState
from optix.transforms._momentum import scale_by_momentum as scale_by_momentum
from optix.transforms._regularize import AddDecayedWeightsState as AddDecayedWeightsState
from optix.transforms._regularize import AddNoiseState as AddNoiseState
from optix.transforms._regularize import add_decayed_weights as add_decayed_weights
from optix.transforms._regularize import add_noise as add_noise
from optix.transforms._regularize import noise_key as noise_key
from optix.transforms._scale import ScaleByScheduleState as ScaleByScheduleState
from optix.transforms._scale import ScaleLrState as ScaleLrState
from optix.transforms._scale import ScaleState as ScaleState
from optix.transforms._scale import scale as scale
from optix.transforms._scale import scale_by_schedule as scale_by_schedule
from optix.transforms._scale import scale_by_sign as scale_by_sign
from optix.transforms._scale import scale_lr as scale_lr
from optix.wrappers._accumulate import AccumulateState as AccumulateState
from optix.wrappers._accumulate import accumulate as accumulate
from optix.wrappers._average import ParamEmaState as ParamEmaState
from optix.wrappers._average import SwaState as SwaState
from optix.wrappers._average import averaged_params as averaged_params
from optix.wrappers._average import param_ema as param_ema
from optix.wrappers._average import swa as swa
from optix.wrappers._lookahead import LookaheadState as LookaheadState
from optix.wrappers._lookahead import lookahead as lookahead
from optix.wrappers._masked import MaskedState as MaskedState
from optix.wrappers._masked import freeze as freeze
from optix.wrappers._masked import masked as masked
from optix.wrappers._nonfinite import SkipNonfiniteState as SkipNonfiniteState
from optix.wrappers._nonfinite import skip_nonfinite as skip_nonfinite
from optix.wrappers._partition import PartitionState as PartitionState
from optix.wrappers._partition import partition as partition
from optix.wrappers._plateau import ReduceOnPlateauState as ReduceOnPlateauState
from optix.wrappers._plateau import reduce_on_plateau as reduce_on_plateau

__version__ = "0.1.0"

__all__ = [
    "AccumulateState",
    "AdaptiveGradClipState",
    "AddDecayedWeightsState",
    "AddNoiseState",
    "ClipByBlockRmsState",
    "ClipByGlobalNormState",
    "ClipState",
    "EmptyState",
    "GradientTransformation",
    "HyperparamState",
    "LookaheadState",
    "MaskedState",
    "OptState",
    "ParamEmaState",
    "Params",
    "PartitionState",
    "ReduceOnPlateauState",
    "ScalarOrSchedule",
    "ScaleByAdadeltaState",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByMomentumState",
    "ScaleByNadamState",
    "ScaleByRadamState",
    "ScaleByRmsState",
    "ScaleByScheduleState",
    "ScaleLrState",
    "ScaleState",
    "Schedule",
    "SkipNonfiniteState",
    "SwaState",
    "Updates",
    "accumulate",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_noise",
    "apply_updates",
    "averaged_params",
    "chain",
    "check_state",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "format_state",
    "freeze",
    "get_hyperparams",
    "identity",
    "incremental_update",
    "lookahead",
    "masked",
    "nadam",
    "named_chain",
    "noise_key",
    "noisy_sgd",
    "param_ema",
    "partition",
    "radam",
    "reduce_on_plateau",
    "restore_state",
    "rmsprop",
    "scale",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_momentum",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_schedule",
    "scale_by_sign",
    "scale_lr",
    "schedules",
    "set_hyperparams",
    "set_to_zero",
    "sharding",
    "sgd",
    "skip_nonfinite",
    "state_get",
    "state_paths",
    "state_set",
    "stateless",
    "swa",
]
