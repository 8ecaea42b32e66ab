"""Matplotlib figures, in one consistent style.

Every plot function takes an optional ``ax`` (a new figure is made if it is ``None``), draws on it,
labels its axes with their quantity and scale, and returns it; the report's multi-panel figures
take an optional ``fig`` instead and return it. None calls ``plt.show()``; all work headless (Agg).
Save with :func:`save_figure`, which never overwrites a file unless asked.

One module per topic; every public name is re-exported here. matplotlib is imported inside the
functions, not in ``jaxflow/__init__.py``, so the core imports fast.
"""

from jaxflow.plotting._common import STYLE as STYLE
from jaxflow.plotting._common import new_axes, save_figure
from jaxflow.plotting.bounds import plot_bound_panels, plot_sigmoid_bound, plot_tight_construction
from jaxflow.plotting.gradients import (
    plot_chain_rule_errors,
    plot_clipping,
    plot_gradient_flow,
    plot_init_comparison,
    plot_residual_comparison,
    plot_training,
)
from jaxflow.plotting.mean_field import (
    plot_chi1_decay,
    plot_chi1_decay_panels,
    plot_dead_units,
    plot_dynamical_isometry,
    plot_phase_diagram,
)
from jaxflow.plotting.spectra import (
    plot_jacobian_spectra,
    plot_log_singular_values,
    plot_lyapunov_spectrum,
)
from jaxflow.plotting.sweeps import (
    plot_gradient_ratio,
    plot_sweep_heatmap,
    plot_sweep_summary,
    sweep_summary,
)
from jaxflow.plotting.trainability import plot_isometry, plot_trainability, trainability_map

__all__ = [
    "new_axes",
    "plot_bound_panels",
    "plot_chain_rule_errors",
    "plot_chi1_decay",
    "plot_chi1_decay_panels",
    "plot_clipping",
    "plot_dead_units",
    "plot_dynamical_isometry",
    "plot_gradient_flow",
    "plot_gradient_ratio",
    "plot_init_comparison",
    "plot_isometry",
    "plot_jacobian_spectra",
    "plot_log_singular_values",
    "plot_lyapunov_spectrum",
    "plot_phase_diagram",
    "plot_residual_comparison",
    "plot_sigmoid_bound",
    "plot_sweep_heatmap",
    "plot_sweep_summary",
    "plot_tight_construction",
    "plot_training",
    "plot_trainability",
    "save_figure",
    "sweep_summary",
    "trainability_map",
]
