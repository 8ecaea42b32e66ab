"""The benchmark workloads, defined once: sizes, seeds, how weights and inputs are drawn, checksums.

Every implementation (jaxflow, eager JAX, tutorial-style and best PyTorch) reads its workload from
here, so they all compute the same numbers on **the same weights**: weights and inputs are drawn
with NumPy from fixed seeds (never from a framework's own RNG), in float32, and every script either
draws them in-process with the functions below or loads the very same arrays from a file the
runner wrote once (``python benchmarks/workloads export ...``). A checksum of each workload's
outputs — defined here, with its tolerance — must agree across implementations and with the
float64 NumPy reference below, or the runner refuses to report the result.

One module per workload; every name is re-exported here. The package needs only NumPy (no jax, no torch), so the PyTorch scripts import
it too.

Conventions shared by every workload: a hidden layer is h_l = φ(W_l h_{l−1}) with W_l in the
mathematical (out, in) layout (``torch.nn.Linear.weight`` as is; a Flax kernel is W_lᵀ), zero
biases unless stated, J_l = ∂h_l/∂h_{l−1} = diag(φ′(z_l)) W_l, P_l = J_l ⋯ J_1, singular values
descending.
"""

from ._common import (
    CHECKSUM_RTOL,
    INIT_VARIANCES,
    NP_ACTIVATIONS,
    ROOT_SEED,
    SCALES,
    draw_weights,
)
from ._registry import (
    WORKLOADS,
    Workload,
    checksum_rtol,
    checksums_agree,
    get_spec,
    get_workload,
    load_data,
    save_data,
)
from .deep_chain import (
    DEEP,
    DeepChain,
    DeepChainData,
    deep_chain_checksum,
    deep_chain_data,
    deep_chain_reference,
)
from .monitor import MONITOR, TrainingMonitor, monitor_checksum, monitor_data
from .notes import (
    NOTES,
    NotesComparison,
    NotesData,
    mlp_variables,
    notes_checksum,
    notes_data,
    notes_reference,
)
from .spectra import (
    SPECTRA,
    SpectraChecksum,
    SpectraData,
    SpectraSweep,
    spectra_data,
    spectra_reference,
)
from .trainability import (
    TRAINABILITY,
    Trainability,
    TrainabilityData,
    digits_split,
    initial_parameters,
    trainability_checksum,
    trainability_data,
)

__all__ = [
    "CHECKSUM_RTOL",
    "DEEP",
    "DeepChain",
    "DeepChainData",
    "INIT_VARIANCES",
    "MONITOR",
    "NOTES",
    "NP_ACTIVATIONS",
    "NotesComparison",
    "NotesData",
    "ROOT_SEED",
    "SCALES",
    "SPECTRA",
    "SpectraChecksum",
    "SpectraData",
    "SpectraSweep",
    "TRAINABILITY",
    "Trainability",
    "TrainabilityData",
    "TrainingMonitor",
    "WORKLOADS",
    "Workload",
    "checksum_rtol",
    "checksums_agree",
    "deep_chain_checksum",
    "deep_chain_data",
    "deep_chain_reference",
    "digits_split",
    "draw_weights",
    "get_spec",
    "get_workload",
    "initial_parameters",
    "load_data",
    "mlp_variables",
    "monitor_checksum",
    "monitor_data",
    "notes_checksum",
    "notes_data",
    "notes_reference",
    "save_data",
    "spectra_data",
    "spectra_reference",
    "trainability_checksum",
    "trainability_data",
]
