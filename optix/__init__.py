"""optix: composable, JIT-compiled optimizers for JAX.

An optimizer is a :class:`GradientTransformation`: a pure ``(init, update)`` pair. Small
transforms compose with :func:`chain`; :func:`apply_updates` adds the result to the params.
Transforms produce directions; only :func:`scale_lr` turns a direction into a step (multiplying by
``-learning_rate``), and :func:`apply_updates` only adds.
"""

from optix import schedules, sharding, toolkit
from optix._apply import apply_updates, incremental_update
from optix._base import (
    EmptyState,
    GradientTransformation,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    identity,
    set_to_zero,
    stateless,
)
from optix._chain import chain, named_chain
from optix._checkpoint import check_state, restore_state
from optix._hyperparams import HyperparamState, get_hyperparams, set_hyperparams
from optix._pack import Packed, pack, unpack
from optix._per_example_clip import per_example_global_norm_clip, per_example_layer_norm_clip
from optix._periodic import periodic_update
from optix._state import format_state, state_get, state_paths, state_set
from optix.optimizers._acprop import ScaleByAcpropState, acprop, scale_by_acprop
from optix.optimizers._adabelief import ScaleByAdabeliefState, adabelief, scale_by_adabelief
from optix.optimizers._adadelta import ScaleByAdadeltaState, adadelta, scale_by_adadelta
from optix.optimizers._adafactor import ScaleByFactoredRmsState, adafactor, scale_by_factored_rms
from optix.optimizers._adafactor_parts import (
    AdafactorMomentumState,
    ScaleByParamBlockRmsState,
    adafactor_momentum,
    scale_by_param_block_rms,
)
from optix.optimizers._adagrad import ScaleByAdagradState, adagrad, scale_by_adagrad
from optix.optimizers._adam import ScaleByAdamState, adam, adamw, scale_by_adam
from optix.optimizers._adamax import ScaleByAdamaxState, adamax, adamaxw, scale_by_adamax
from optix.optimizers._adan import ScaleByAdanState, adan, scale_by_adan
from optix.optimizers._ademamix import ScaleByAdemamixState, ademamix, scale_by_ademamix
from optix.optimizers._adopt import ScaleByAdoptState, adopt, scale_by_adopt
from optix.optimizers._cocob import ScaleByCocobState, cocob, scale_by_cocob
from optix.optimizers._dadapt import ScaleByDadaptAdamState, dadapt_adamw
from optix.optimizers._dog import (
    ScaleByDogState,
    ScaleByDowgState,
    dog,
    dowg,
    scale_by_dog,
    scale_by_dowg,
)
from optix.optimizers._fromage import ScaleByFromageState, fromage, scale_by_fromage
from optix.optimizers._galore import (
    GaloreDimensionNumbers,
    ScaleByGaloreState,
    galore,
    scale_by_galore,
)
from optix.optimizers._lamb import lamb
from optix.optimizers._lars import lars
from optix.optimizers._lbfgs import ScaleByLbfgsState, lbfgs, scale_by_lbfgs
from optix.optimizers._lion import ScaleByLionState, lion, scale_by_lion
from optix.optimizers._madgrad import ScaleByMadgradState, madgrad, scale_by_madgrad
from optix.optimizers._mechanize import MechanizeState, mechanize
from optix.optimizers._momo import MomoAdamState, MomoState, momo, momo_adam
from optix.optimizers._muon import ScaleByMuonState, muon, scale_by_muon
from optix.optimizers._normuon import ScaleByNorMuonState, normuon, scale_by_normuon
from optix.optimizers._nadam import ScaleByNadamState, nadam, scale_by_nadam
from optix.optimizers._nadamw import ScaleByNesterovAdamState, nadamw, scale_by_nesterov_adam
from optix.optimizers._novograd import ScaleByNovogradState, novograd, scale_by_novograd
from optix.optimizers._optimistic import (
    ScaleByOptimisticGradientState,
    optimistic_adam,
    optimistic_gradient_descent,
    scale_by_optimistic_gradient,
)
from optix.optimizers._polyak import ScaleByPolyakState, polyak_sgd, scale_by_polyak
from optix.optimizers._prodigy import ScaleByProdigyState, prodigy
from optix.optimizers._radam import ScaleByRadamState, radam, scale_by_radam
from optix.optimizers._rmsprop import ScaleByRmsState, rmsprop, scale_by_rms
from optix.optimizers._rprop import ScaleByRpropState, rprop, scale_by_rprop
from optix.optimizers._schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from optix.optimizers._sgd import ScaleByMomentumState, noisy_sgd, scale_by_momentum, sgd
from optix.optimizers._psgd_kron import (
    PsgdKronLeafState,
    ScaleByPsgdKronState,
    psgd_kron,
    scale_by_psgd_kron,
)
from optix.optimizers._shampoo_eigen import (
    EigenShampooLeafState,
    ScaleByEigenShampooState,
    scale_by_eigenvalue_corrected_shampoo,
)
from optix.optimizers._shampoo import (
    ScaleByShampooState,
    ShampooLeafState,
    scale_by_shampoo,
    shampoo,
)
from optix.optimizers._signum import ScaleBySignumState, scale_by_signum, sign_sgd, signum
from optix.optimizers._simplified_ademamix import (
    ScaleBySimplifiedAdemamixState,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from optix.optimizers._sm3 import ScaleBySm3State, scale_by_sm3, sm3
from optix.optimizers._soap import ScaleBySoapState, SoapLeafState, scale_by_soap, soap
from optix.optimizers._sophia import (
    HutchinsonState,
    ScaleBySophiaState,
    hutchinson_hessian_diag,
    scale_by_sophia,
    sophia,
)
from optix.optimizers._yogi import ScaleByYogiState, scale_by_yogi, yogi
from optix.transforms._blockclip import (
    AdaptiveGradClipState,
    ClipByBlockRmsState,
    adaptive_grad_clip,
    clip_by_block_rms,
)
from optix.transforms._clip import ClipByGlobalNormState, ClipState, clip, clip_by_global_norm
from optix.transforms._debiased_rms import ScaleByDebiasedRmsState, scale_by_debiased_rms
from optix.transforms._ema import EmaState, ema
from optix.transforms._linesearch import (
    BacktrackingInfo,
    ScaleByBacktrackingLinesearchState,
    scale_by_backtracking_linesearch,
)
from optix.transforms._normalize import (
    NormalizeByUpdateNormState,
    ScaleByParamBlockNormState,
    centralize,
    normalize_by_update_norm,
    scale_by_param_block_norm,
)
from optix.transforms._regularize import (
    AddDecayedWeightsState,
    AddNoiseState,
    add_decayed_weights,
    add_noise,
    noise_key,
)
from optix.transforms._scale import (
    ScaleByScheduleState,
    ScaleLrState,
    ScaleState,
    scale,
    scale_by_schedule,
    scale_by_sign,
    scale_lr,
)
from optix.transforms._matrix_spec import MatrixSpec
from optix.transforms._stddev import ScaleByStddevState, scale_by_stddev
from optix.transforms._trust_ratio import ScaleByTrustRatioState, scale_by_trust_ratio
from optix.transforms._zclip import ZclipState, zclip
from optix.transforms._zero_nans import ZeroNansState, zero_nans
from optix.transforms._zoom_linesearch import (
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)
from optix.wrappers._accumulate import AccumulateState, accumulate, accumulate_has_updated
from optix.wrappers._average import ParamEmaState, SwaState, averaged_params, param_ema, swa
from optix.wrappers._cautious import CautiousState, cautious
from optix.wrappers._conditional import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    conditionally_mask,
    conditionally_transform,
)
from optix.wrappers._fuse import FuseState, fuse
from optix.wrappers._graft import GraftState, graft
from optix.wrappers._hypergradient import HypergradientDescentState, hypergradient_descent
from optix.wrappers._lookahead import LookaheadState, lookahead
from optix.wrappers._mars import MarsState, mars
from optix.wrappers._masked import MaskedState, freeze, masked
from optix.wrappers._monitor import MonitorState, metrics, monitor
from optix.wrappers._nonfinite import SkipNonfiniteState, skip_nonfinite
from optix.wrappers._partition import PartitionState, partition
from optix.wrappers._plateau import ReduceOnPlateauState, reduce_on_plateau
from optix.wrappers._rounding import (
    KahanSummationState,
    StochasticRoundingState,
    kahan_summation,
    stochastic_rounding,
)
from optix.wrappers._quantize import QuantizedArray, QuantizedState, quantize_state
from optix.wrappers._sam import SamNormalizeState, SamState, sam
from optix.wrappers._spikes import SkipSpikesState, skip_spikes

__version__ = "0.1.0"

# The public names. Every name imported above is listed here (a test checks), so tools that
# honour __all__ (mypy's no-implicit-reexport, `from optix import *`) see them.
# fmt: off
__all__ = [
    "accumulate", "accumulate_has_updated", "AccumulateState", "acprop", "adabelief", "adadelta",
    "adafactor", "adafactor_momentum", "AdafactorMomentumState", "adagrad", "adam", "adamax",
    "adamaxw", "adamw", "adan", "adaptive_grad_clip", "AdaptiveGradClipState",
    "add_decayed_weights", "add_noise", "AddDecayedWeightsState", "AddNoiseState", "ademamix",
    "adopt", "apply_updates", "averaged_params", "BacktrackingInfo", "cautious", "CautiousState",
    "centralize", "chain", "check_state", "clip", "clip_by_block_rms", "clip_by_global_norm",
    "ClipByBlockRmsState", "ClipByGlobalNormState", "ClipState", "cocob", "conditionally_mask",
    "conditionally_transform", "ConditionallyMaskState", "ConditionallyTransformState",
    "dadapt_adamw", "dog", "dowg", "ema", "EmaState", "EmptyState", "format_state", "freeze",
    "fromage", "fuse", "FuseState", "galore", "GaloreDimensionNumbers", "get_hyperparams",
    "GradientTransformation", "graft", "GraftState", "hutchinson_hessian_diag", "HutchinsonState",
    "HyperparamState", "identity", "incremental_update", "lamb", "lars", "lbfgs", "lion",
    "lookahead", "LookaheadState", "madgrad", "mars", "MarsState", "masked", "MaskedState",
    "mechanize", "MechanizeState", "metrics", "momo", "momo_adam", "MomoAdamState", "MomoState",
    "monitor", "MonitorState", "muon", "nadam", "nadamw", "named_chain", "noise_key", "noisy_sgd",
    "normalize_by_update_norm", "NormalizeByUpdateNormState", "novograd", "optimistic_adam",
    "optimistic_gradient_descent", "OptState", "pack", "Packed", "param_ema", "ParamEmaState",
    "Params", "partition", "PartitionState", "per_example_global_norm_clip",
    "per_example_layer_norm_clip", "periodic_update", "polyak_sgd", "prodigy", "quantize_state",
    "QuantizedArray", "QuantizedState", "radam", "reduce_on_plateau", "ReduceOnPlateauState",
    "restore_state", "rmsprop", "rprop", "sam", "SamNormalizeState", "SamState", "ScalarOrSchedule",
    "scale", "scale_by_acprop", "scale_by_adabelief", "scale_by_adadelta", "scale_by_adagrad",
    "scale_by_adam", "scale_by_adamax", "scale_by_adan", "scale_by_ademamix", "scale_by_adopt",
    "scale_by_backtracking_linesearch", "scale_by_cocob", "scale_by_debiased_rms", "scale_by_dog",
    "scale_by_dowg", "scale_by_factored_rms", "scale_by_fromage", "scale_by_galore",
    "scale_by_lbfgs", "scale_by_lion", "scale_by_madgrad", "scale_by_momentum", "scale_by_muon",
    "scale_by_nadam", "scale_by_nesterov_adam", "scale_by_novograd", "scale_by_optimistic_gradient",
    "scale_by_param_block_norm", "scale_by_param_block_rms", "scale_by_polyak", "scale_by_radam",
    "scale_by_rms", "scale_by_rprop", "scale_by_schedule", "scale_by_shampoo", "scale_by_sign",
    "scale_by_signum", "scale_by_simplified_ademamix", "scale_by_sm3", "scale_by_soap",
    "scale_by_sophia", "scale_by_stddev", "scale_by_trust_ratio", "scale_by_yogi",
    "scale_by_zoom_linesearch", "scale_lr", "ScaleByAcpropState", "ScaleByAdabeliefState",
    "ScaleByAdadeltaState", "ScaleByAdagradState", "ScaleByAdamaxState", "ScaleByAdamState",
    "ScaleByAdanState", "ScaleByAdemamixState", "ScaleByAdoptState",
    "ScaleByBacktrackingLinesearchState", "ScaleByCocobState", "ScaleByDadaptAdamState",
    "ScaleByDebiasedRmsState", "ScaleByDogState", "ScaleByDowgState", "ScaleByFactoredRmsState",
    "ScaleByFromageState", "ScaleByGaloreState", "ScaleByLbfgsState", "ScaleByLionState",
    "ScaleByMadgradState", "ScaleByMomentumState", "ScaleByMuonState", "ScaleByNadamState",
    "ScaleByNesterovAdamState", "ScaleByNovogradState", "ScaleByOptimisticGradientState",
    "ScaleByParamBlockNormState", "ScaleByParamBlockRmsState", "ScaleByPolyakState",
    "ScaleByProdigyState", "ScaleByRadamState", "ScaleByRmsState", "ScaleByRpropState",
    "ScaleByScheduleState", "ScaleByShampooState", "ScaleBySignumState",
    "ScaleBySimplifiedAdemamixState", "ScaleBySm3State", "ScaleBySoapState", "ScaleBySophiaState",
    "ScaleByStddevState", "ScaleByTrustRatioState", "ScaleByYogiState",
    "ScaleByZoomLinesearchState", "ScaleLrState", "ScaleState", "Schedule", "schedule_free",
    "schedule_free_adamw", "schedule_free_eval_params", "schedule_free_sgd", "ScheduleFreeState",
    "schedules", "set_hyperparams", "set_to_zero", "sgd", "shampoo", "ShampooLeafState", "sharding", "toolkit",
    "sign_sgd", "signum", "simplified_ademamix", "skip_nonfinite", "skip_spikes",
    "SkipNonfiniteState", "SkipSpikesState", "sm3", "soap", "SoapLeafState", "sophia", "state_get",
    "state_paths", "state_set", "stateless", "swa", "SwaState", "unpack", "Updates",
    "value_and_grad_from_state", "yogi", "zclip", "ZclipState", "zero_nans", "ZeroNansState",
    "hypergradient_descent", "HypergradientDescentState",
    "ZoomLinesearchInfo", "kahan_summation", "KahanSummationState", "stochastic_rounding",
    "StochasticRoundingState",
    "MatrixSpec",
    "psgd_kron", "scale_by_psgd_kron", "PsgdKronLeafState", "ScaleByPsgdKronState",
    "scale_by_eigenvalue_corrected_shampoo", "EigenShampooLeafState", "ScaleByEigenShampooState",
    "normuon", "scale_by_normuon", "ScaleByNorMuonState",
]
# fmt: on
