"""Learning-rate schedules: plain functions from the int step count to a value.

A schedule is accepted wherever a learning rate (or any other hyperparameter) is. The values of
the schedules here are finite and ``>= 0`` (checked when they are built), like every
hyperparameter a schedule can drive; lengths and boundaries may be any size, beyond the int32
range too. A schedule of your own can be any function ``step -> value``. When it leaves the
range of a learning rate, weight decay, ``eps``, ``b1``, ``b2``, ``momentum`` or ``decay`` (a
hand-written decay that goes negative past its horizon, say), the update raises ``ValueError``
outside ``jax.jit`` and clamps the value into range inside it, where the state then shows the
clamped value that the update used.
"""

from optix.schedules._basic import constant as constant
from optix.schedules._basic import exponential_decay as exponential_decay
from optix.schedules._basic import join as join
from optix.schedules._basic import linear as linear
from optix.schedules._basic import piecewise_constant as piecewise_constant
from optix.schedules._basic import polynomial as polynomial
from optix.schedules._cosine import cosine_decay as cosine_decay
from optix.schedules._cosine import warmup_cosine_decay as warmup_cosine_decay
from optix.schedules._cyclic import cyclic as cyclic
from optix.schedules._cyclic import one_cycle as one_cycle
from optix.schedules._cyclic import sgdr as sgdr
from optix.schedules._decay import inverse_sqrt as inverse_sqrt
from optix.schedules._decay import inverse_time_decay as inverse_time_decay
from optix.schedules._decay import step_decay as step_decay
from optix.schedules._decay import warmup_stable_decay as warmup_stable_decay
from optix.schedules._piecewise import linear_onecycle as linear_onecycle
from optix.schedules._piecewise import piecewise_interpolate as piecewise_interpolate
from optix.schedules._warmup import warmup_constant as warmup_constant
from optix.schedules._warmup import warmup_exponential_decay as warmup_exponential_decay

__all__ = [
    "constant",
    "cosine_decay",
    "cyclic",
    "exponential_decay",
    "inverse_sqrt",
    "inverse_time_decay",
    "join",
    "linear",
    "linear_onecycle",
    "one_cycle",
    "piecewise_constant",
    "piecewise_interpolate",
    "polynomial",
    "sgdr",
    "step_decay",
    "warmup_constant",
    "warmup_cosine_decay",
    "warmup_exponential_decay",
    "warmup_stable_decay",
]
