"""Learning-rate schedules: plain functions from the int step count to a value.

A schedule is accepted wherever a learning rate (or any other hyperparameter) is.
"""

from optix.schedules._basic import (
    constant as constant,
)
from optix.schedules._basic import (
    exponential_decay as exponential_decay,
)
from optix.schedules._basic import (
    join as join,
)
from optix.schedules._basic import (
    linear as linear,
)
from optix.schedules._basic import (
    piecewise_constant as piecewise_constant,
)
from optix.schedules._basic import (
    polynomial as polynomial,
)
from optix.schedules._cosine import (
    cosine_decay as cosine_decay,
)
from optix.schedules._cosine import (
    warmup_cosine_decay as warmup_cosine_decay,
)
from optix.schedules._cyclic import cyclic as cyclic
from optix.schedules._cyclic import one_cycle as one_cycle
from optix.schedules._cyclic import sgdr as sgdr
from optix.schedules._decay import inverse_sqrt as inverse_sqrt
from optix.schedules._decay import inverse_time_decay as inverse_time_decay
from optix.schedules._decay import step_decay as step_decay
from optix.schedules._decay import warmup_stable_decay as warmup_stable_decay

__all__ = [
    "constant",
    "cosine_decay",
    "cyclic",
    "exponential_decay",
    "inverse_sqrt",
    "inverse_time_decay",
    "join",
    "linear",
    "one_cycle",
    "piecewise_constant",
    "polynomial",
    "sgdr",
    "step_decay",
    "warmup_cosine_decay",
    "warmup_stable_decay",
]
