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
from optix._pack import Packed as Packed
from optix._pack import pack as pack
from optix._pack import unpack as unpack
from optix._per_example_clip import (
    per_example_global_norm_clip as per_example_global_norm_clip,
)
from optix._per_example_clip import (
    per_example_layer_norm_clip as per_example_layer_norm_clip,
)
from optix._periodic import periodic_update as periodic_update
from optix._state import format_state as format_state
from optix._state import state_get as state_get
from optix._state import state_paths as state_paths
from optix._state import state_set as state_set
from optix.optimizers._adam import adam as adam
from optix.optimizers._adam import adamax as adamax
from optix.optimizers._adam import adamw as adamw
from optix.optimizers._adam import nadam as nadam
from optix.optimizers._adam import radam as radam
from optix.optimizers._adam_variants import adabelief as adabelief
from optix.optimizers._adam_variants import adan as adan
from optix.optimizers._adam_variants import ademamix as ademamix
from optix.optimizers._adam_variants import adopt as adopt
from optix.optimizers._adam_variants import yogi as yogi
from optix.optimizers._adaptive import adadelta as adadelta
from optix.optimizers._adaptive import adagrad as adagrad
from optix.optimizers._adaptive import rmsprop as rmsprop

# zoo-B: layer-wise and factored optimizers
from optix.optimizers._factored import adafactor as adafactor
from optix.optimizers._factored import sm3 as sm3
from optix.optimizers._layerwise import fromage as fromage
from optix.optimizers._layerwise import lamb as lamb
from optix.optimizers._layerwise import lars as lars
from optix.optimizers._layerwise import novograd as novograd
from optix.optimizers._lbfgs import lbfgs as lbfgs

# zoo-D: matrix optimizers
from optix.optimizers._matrix import muon as muon
from optix.optimizers._matrix import shampoo as shampoo
from optix.optimizers._matrix import soap as soap
from optix.optimizers._parameter_free import dadapt_adamw as dadapt_adamw
from optix.optimizers._parameter_free import prodigy as prodigy
from optix.optimizers._schedule_free import schedule_free_adamw as schedule_free_adamw
from optix.optimizers._schedule_free import schedule_free_sgd as schedule_free_sgd
from optix.optimizers._sgd import noisy_sgd as noisy_sgd
from optix.optimizers._sgd import sgd as sgd
from optix.optimizers._sign import lion as lion
from optix.optimizers._sign import rprop as rprop
from optix.optimizers._sign import sign_sgd as sign_sgd
from optix.optimizers._sign import signum as signum
from optix.transforms._acprop import ScaleByAcpropState as ScaleByAcpropState
from optix.transforms._acprop import acprop as acprop
from optix.transforms._acprop import scale_by_acprop as scale_by_acprop
from optix.transforms._adafactor import AdafactorMomentumState as AdafactorMomentumState
from optix.transforms._adafactor import ScaleByFactoredRmsState as ScaleByFactoredRmsState
from optix.transforms._adafactor import ScaleByParamBlockRmsState as ScaleByParamBlockRmsState
from optix.transforms._adafactor import adafactor_momentum as adafactor_momentum
from optix.transforms._adafactor import scale_by_factored_rms as scale_by_factored_rms
from optix.transforms._adafactor import scale_by_param_block_rms as scale_by_param_block_rms
from optix.transforms._adam import ScaleByAdamaxState as ScaleByAdamaxState
from optix.transforms._adam import ScaleByAdamState as ScaleByAdamState
from optix.transforms._adam import ScaleByNadamState as ScaleByNadamState
from optix.transforms._adam import ScaleByRadamState as ScaleByRadamState
from optix.transforms._adam import scale_by_adam as scale_by_adam
from optix.transforms._adam import scale_by_adamax as scale_by_adamax
from optix.transforms._adam import scale_by_nadam as scale_by_nadam
from optix.transforms._adam import scale_by_radam as scale_by_radam
from optix.transforms._adam_variants import ScaleByAdabeliefState as ScaleByAdabeliefState
from optix.transforms._adam_variants import ScaleByAdoptState as ScaleByAdoptState
from optix.transforms._adam_variants import ScaleByYogiState as ScaleByYogiState
from optix.transforms._adam_variants import scale_by_adabelief as scale_by_adabelief
from optix.transforms._adam_variants import scale_by_adopt as scale_by_adopt
from optix.transforms._adam_variants import scale_by_yogi as scale_by_yogi
from optix.transforms._adamaxw import adamaxw as adamaxw
from optix.transforms._adan import ScaleByAdanState as ScaleByAdanState
from optix.transforms._adan import scale_by_adan as scale_by_adan
from optix.transforms._adaptive import ScaleByAdadeltaState as ScaleByAdadeltaState
from optix.transforms._adaptive import ScaleByAdagradState as ScaleByAdagradState
from optix.transforms._adaptive import ScaleByRmsState as ScaleByRmsState
from optix.transforms._adaptive import scale_by_adadelta as scale_by_adadelta
from optix.transforms._adaptive import scale_by_adagrad as scale_by_adagrad
from optix.transforms._adaptive import scale_by_rms as scale_by_rms
from optix.transforms._ademamix import ScaleByAdemamixState as ScaleByAdemamixState
from optix.transforms._ademamix import scale_by_ademamix as scale_by_ademamix
from optix.transforms._blockclip import AdaptiveGradClipState as AdaptiveGradClipState
from optix.transforms._blockclip import ClipByBlockRmsState as ClipByBlockRmsState
from optix.transforms._blockclip import adaptive_grad_clip as adaptive_grad_clip
from optix.transforms._blockclip import clip_by_block_rms as clip_by_block_rms
from optix.transforms._clip import ClipByGlobalNormState as ClipByGlobalNormState
from optix.transforms._clip import ClipState as ClipState
from optix.transforms._clip import clip as clip
from optix.transforms._clip import clip_by_global_norm as clip_by_global_norm
from optix.transforms._cocob import ScaleByCocobState as ScaleByCocobState
from optix.transforms._cocob import cocob as cocob
from optix.transforms._cocob import scale_by_cocob as scale_by_cocob
from optix.transforms._dadapt import ScaleByDadaptAdamState as ScaleByDadaptAdamState
from optix.transforms._dadapt import ScaleByProdigyState as ScaleByProdigyState
from optix.transforms._dadapt import scale_by_dadapt_adam as scale_by_dadapt_adam
from optix.transforms._dadapt import scale_by_prodigy as scale_by_prodigy
from optix.transforms._dog import ScaleByDogState as ScaleByDogState
from optix.transforms._dog import ScaleByDowgState as ScaleByDowgState
from optix.transforms._dog import dog as dog
from optix.transforms._dog import dowg as dowg
from optix.transforms._dog import scale_by_dog as scale_by_dog
from optix.transforms._dog import scale_by_dowg as scale_by_dowg
from optix.transforms._ema import EmaState as EmaState
from optix.transforms._ema import ema as ema
from optix.transforms._fromage import ScaleByFromageState as ScaleByFromageState
from optix.transforms._fromage import scale_by_fromage as scale_by_fromage
from optix.transforms._galore import GaloreDimensionNumbers as GaloreDimensionNumbers
from optix.transforms._galore import ScaleByGaloreState as ScaleByGaloreState
from optix.transforms._galore import galore as galore
from optix.transforms._galore import scale_by_galore as scale_by_galore
from optix.transforms._lbfgs import ScaleByLbfgsState as ScaleByLbfgsState
from optix.transforms._lbfgs import scale_by_lbfgs as scale_by_lbfgs
from optix.transforms._linesearch import BacktrackingInfo as BacktrackingInfo
from optix.transforms._linesearch import (
    ScaleByBacktrackingLinesearchState as ScaleByBacktrackingLinesearchState,
)
from optix.transforms._linesearch import (
    scale_by_backtracking_linesearch as scale_by_backtracking_linesearch,
)
from optix.transforms._madgrad import ScaleByMadgradState as ScaleByMadgradState
from optix.transforms._madgrad import madgrad as madgrad
from optix.transforms._madgrad import scale_by_madgrad as scale_by_madgrad
from optix.transforms._mechanize import MechanizeState as MechanizeState
from optix.transforms._mechanize import mechanize as mechanize
from optix.transforms._momentum import ScaleByMomentumState as ScaleByMomentumState
from optix.transforms._momentum import scale_by_momentum as scale_by_momentum
from optix.transforms._momo import MomoAdamState as MomoAdamState
from optix.transforms._momo import MomoState as MomoState
from optix.transforms._momo import momo as momo
from optix.transforms._momo import momo_adam as momo_adam
from optix.transforms._muon import ScaleByMuonState as ScaleByMuonState
from optix.transforms._muon import scale_by_muon as scale_by_muon
from optix.transforms._nadamw import ScaleByNesterovAdamState as ScaleByNesterovAdamState
from optix.transforms._nadamw import nadamw as nadamw
from optix.transforms._nadamw import scale_by_nesterov_adam as scale_by_nesterov_adam
from optix.transforms._normalize import NormalizeByUpdateNormState as NormalizeByUpdateNormState
from optix.transforms._normalize import ScaleByParamBlockNormState as ScaleByParamBlockNormState
from optix.transforms._normalize import centralize as centralize
from optix.transforms._normalize import normalize_by_update_norm as normalize_by_update_norm
from optix.transforms._normalize import scale_by_param_block_norm as scale_by_param_block_norm
from optix.transforms._novograd import ScaleByNovogradState as ScaleByNovogradState
from optix.transforms._novograd import scale_by_novograd as scale_by_novograd
from optix.transforms._optimistic import (
    ScaleByOptimisticGradientState as ScaleByOptimisticGradientState,
)
from optix.transforms._optimistic import optimistic_adam as optimistic_adam
from optix.transforms._optimistic import optimistic_gradient_descent as optimistic_gradient_descent
from optix.transforms._optimistic import (
    scale_by_optimistic_gradient as scale_by_optimistic_gradient,
)
from optix.transforms._polyak import ScaleByPolyakState as ScaleByPolyakState
from optix.transforms._polyak import polyak_sgd as polyak_sgd
from optix.transforms._polyak import scale_by_polyak as scale_by_polyak
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
from optix.transforms._schedule_free import ScaleByDebiasedRmsState as ScaleByDebiasedRmsState
from optix.transforms._schedule_free import ScheduleFreeState as ScheduleFreeState
from optix.transforms._schedule_free import scale_by_debiased_rms as scale_by_debiased_rms
from optix.transforms._schedule_free import schedule_free as schedule_free
from optix.transforms._schedule_free import schedule_free_eval_params as schedule_free_eval_params
from optix.transforms._shampoo import ScaleByShampooState as ScaleByShampooState
from optix.transforms._shampoo import ShampooLeafState as ShampooLeafState
from optix.transforms._shampoo import scale_by_shampoo as scale_by_shampoo

# end zoo-B
from optix.transforms._sign import ScaleByLionState as ScaleByLionState
from optix.transforms._sign import ScaleByRpropState as ScaleByRpropState
from optix.transforms._sign import ScaleBySignumState as ScaleBySignumState
from optix.transforms._sign import scale_by_lion as scale_by_lion
from optix.transforms._sign import scale_by_rprop as scale_by_rprop
from optix.transforms._sign import scale_by_signum as scale_by_signum
from optix.transforms._simplified_ademamix import (
    ScaleBySimplifiedAdemamixState as ScaleBySimplifiedAdemamixState,
)
from optix.transforms._simplified_ademamix import (
    scale_by_simplified_ademamix as scale_by_simplified_ademamix,
)
from optix.transforms._simplified_ademamix import simplified_ademamix as simplified_ademamix
from optix.transforms._sm3 import ScaleBySm3State as ScaleBySm3State
from optix.transforms._sm3 import scale_by_sm3 as scale_by_sm3
from optix.transforms._soap import ScaleBySoapState as ScaleBySoapState
from optix.transforms._soap import SoapLeafState as SoapLeafState
from optix.transforms._soap import scale_by_soap as scale_by_soap
from optix.transforms._sophia import HutchinsonState as HutchinsonState
from optix.transforms._sophia import ScaleBySophiaState as ScaleBySophiaState
from optix.transforms._sophia import hutchinson_hessian_diag as hutchinson_hessian_diag
from optix.transforms._sophia import scale_by_sophia as scale_by_sophia
from optix.transforms._sophia import sophia as sophia
from optix.transforms._stddev import ScaleByStddevState as ScaleByStddevState
from optix.transforms._stddev import scale_by_stddev as scale_by_stddev
from optix.transforms._trust_ratio import ScaleByTrustRatioState as ScaleByTrustRatioState
from optix.transforms._trust_ratio import scale_by_trust_ratio as scale_by_trust_ratio
from optix.transforms._zero_nans import ZeroNansState as ZeroNansState
from optix.transforms._zero_nans import zero_nans as zero_nans
from optix.transforms._zoom_linesearch import (
    ScaleByZoomLinesearchState as ScaleByZoomLinesearchState,
)
from optix.transforms._zoom_linesearch import ZoomLinesearchInfo as ZoomLinesearchInfo
from optix.transforms._zoom_linesearch import scale_by_zoom_linesearch as scale_by_zoom_linesearch
from optix.transforms._zoom_linesearch import (
    value_and_grad_from_state as value_and_grad_from_state,
)
from optix.wrappers._accumulate import AccumulateState as AccumulateState
from optix.wrappers._accumulate import accumulate as accumulate
from optix.wrappers._accumulate import accumulate_has_updated as accumulate_has_updated
from optix.wrappers._average import ParamEmaState as ParamEmaState
from optix.wrappers._average import SwaState as SwaState
from optix.wrappers._average import averaged_params as averaged_params
from optix.wrappers._average import param_ema as param_ema
from optix.wrappers._average import swa as swa
from optix.wrappers._conditional import ConditionallyMaskState as ConditionallyMaskState
from optix.wrappers._conditional import ConditionallyTransformState as ConditionallyTransformState
from optix.wrappers._conditional import conditionally_mask as conditionally_mask
from optix.wrappers._conditional import conditionally_transform as conditionally_transform
from optix.wrappers._fuse import FuseState as FuseState
from optix.wrappers._fuse import fuse as fuse
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
from optix.wrappers._quantize import QuantizedArray as QuantizedArray
from optix.wrappers._quantize import QuantizedState as QuantizedState
from optix.wrappers._quantize import quantize_state as quantize_state
from optix.wrappers._sam import SamNormalizeState as SamNormalizeState
from optix.wrappers._sam import SamState as SamState
from optix.wrappers._sam import sam as sam

# end zoo-D

__version__ = "0.1.0"

__all__ = [
    "AccumulateState",
    "AdafactorMomentumState",
    "AdaptiveGradClipState",
    "AddDecayedWeightsState",
    "AddNoiseState",
    "BacktrackingInfo",
    "ClipByBlockRmsState",
    "ClipByGlobalNormState",
    "ClipState",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "EmaState",
    "EmptyState",
    "FuseState",
    "GradientTransformation",
    "HyperparamState",
    "LookaheadState",
    "MaskedState",
    "NormalizeByUpdateNormState",
    "OptState",
    "Packed",
    "ParamEmaState",
    "Params",
    "PartitionState",
    "QuantizedArray",
    "QuantizedState",
    "ReduceOnPlateauState",
    "SamNormalizeState",
    "SamState",
    "ScalarOrSchedule",
    "ScaleByAdabeliefState",
    "ScaleByAdadeltaState",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAdanState",
    "ScaleByAdemamixState",
    "ScaleByAdoptState",
    "ScaleByBacktrackingLinesearchState",
    "ScaleByDadaptAdamState",
    "ScaleByDebiasedRmsState",
    "ScaleByFactoredRmsState",
    "ScaleByFromageState",
    "ScaleByLbfgsState",
    "ScaleByLionState",
    "ScaleByMomentumState",
    "ScaleByMuonState",
    "ScaleByNadamState",
    "ScaleByNesterovAdamState",
    "ScaleByNovogradState",
    "ScaleByOptimisticGradientState",
    "ScaleByParamBlockNormState",
    "ScaleByParamBlockRmsState",
    "ScaleByPolyakState",
    "ScaleByProdigyState",
    "ScaleByRadamState",
    "ScaleByRmsState",
    "ScaleByRpropState",
    "ScaleByScheduleState",
    "ScaleByShampooState",
    "ScaleBySignumState",
    "ScaleBySm3State",
    "ScaleBySoapState",
    "ScaleByStddevState",
    "ScaleByTrustRatioState",
    "ScaleByYogiState",
    "ScaleByZoomLinesearchState",
    "ScaleLrState",
    "ScaleState",
    "Schedule",
    "ScheduleFreeState",
    "ShampooLeafState",
    "SkipNonfiniteState",
    "SoapLeafState",
    "SwaState",
    "Updates",
    "ZeroNansState",
    "ZoomLinesearchInfo",
    "accumulate",
    "accumulate_has_updated",
    "adabelief",
    "adadelta",
    "adafactor",
    "adafactor_momentum",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_noise",
    "ademamix",
    "adopt",
    "apply_updates",
    "averaged_params",
    "centralize",
    "chain",
    "check_state",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "conditionally_mask",
    "conditionally_transform",
    "dadapt_adamw",
    "ema",
    "format_state",
    "freeze",
    "fromage",
    "fuse",
    "get_hyperparams",
    "identity",
    "incremental_update",
    "lamb",
    "lars",
    "lbfgs",
    "lion",
    "lookahead",
    "masked",
    "muon",
    "nadam",
    "nadamw",
    "named_chain",
    "noise_key",
    "noisy_sgd",
    "normalize_by_update_norm",
    "novograd",
    "optimistic_adam",
    "optimistic_gradient_descent",
    "pack",
    "param_ema",
    "partition",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "periodic_update",
    "polyak_sgd",
    "prodigy",
    "quantize_state",
    "radam",
    "reduce_on_plateau",
    "restore_state",
    "rmsprop",
    "rprop",
    "sam",
    "scale",
    "scale_by_adabelief",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_backtracking_linesearch",
    "scale_by_dadapt_adam",
    "scale_by_debiased_rms",
    "scale_by_factored_rms",
    "scale_by_fromage",
    "scale_by_lbfgs",
    "scale_by_lion",
    "scale_by_momentum",
    "scale_by_muon",
    "scale_by_nadam",
    "scale_by_nesterov_adam",
    "scale_by_novograd",
    "scale_by_optimistic_gradient",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_polyak",
    "scale_by_prodigy",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_schedule",
    "scale_by_shampoo",
    "scale_by_sign",
    "scale_by_signum",
    "scale_by_sm3",
    "scale_by_soap",
    "scale_by_stddev",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "scale_by_zoom_linesearch",
    "scale_lr",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "schedules",
    "set_hyperparams",
    "set_to_zero",
    "sgd",
    "shampoo",
    "sharding",
    "sign_sgd",
    "signum",
    "skip_nonfinite",
    "sm3",
    "soap",
    "state_get",
    "state_paths",
    "state_set",
    "stateless",
    "swa",
    "unpack",
    "value_and_grad_from_state",
    "yogi",
    "zero_nans",
    "ScaleByAcpropState",
    "acprop",
    "scale_by_acprop",
    "ScaleByCocobState",
    "cocob",
    "scale_by_cocob",
    "ScaleByDogState",
    "ScaleByDowgState",
    "dog",
    "dowg",
    "scale_by_dog",
    "scale_by_dowg",
    "ScaleByMadgradState",
    "madgrad",
    "scale_by_madgrad",
    "ScaleBySimplifiedAdemamixState",
    "scale_by_simplified_ademamix",
    "simplified_ademamix",
    "MomoAdamState",
    "MomoState",
    "momo",
    "momo_adam",
    "MechanizeState",
    "mechanize",
    "HutchinsonState",
    "ScaleBySophiaState",
    "hutchinson_hessian_diag",
    "scale_by_sophia",
    "sophia",
    "GaloreDimensionNumbers",
    "ScaleByGaloreState",
    "galore",
    "scale_by_galore",
]
