"""CPU linear kernels for small row counts (torch only; nothing here knows transformers).

:class:`PackedLinear` runs each row count through the kernel its plan names;
:func:`tune_linears` fills the plans by measurement, within a memory policy
(:data:`KERNEL_MEMORY`: ``lean`` keeps no weight copies, ``fast`` several).
"""

from ._packed import COPY_KERNELS, LINEAR_KERNELS, PackedLinear, mkl_packed_available
from ._tune import (
    KERNEL_MEMORY,
    MKL_PACK_MAX_BYTES,
    cpu_name,
    describe_linear_plans,
    linear_groups,
    linear_plan_digest,
    pack_linears,
    tune_linears,
)

__all__ = [
    "COPY_KERNELS",
    "KERNEL_MEMORY",
    "LINEAR_KERNELS",
    "MKL_PACK_MAX_BYTES",
    "PackedLinear",
    "cpu_name",
    "describe_linear_plans",
    "linear_groups",
    "linear_plan_digest",
    "mkl_packed_available",
    "pack_linears",
    "tune_linears",
]
