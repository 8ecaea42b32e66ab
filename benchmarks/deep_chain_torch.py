"""The deep chain in PyTorch as a strong user writes it, as a whole process.

For each chain (sigmoid-Xavier; relu-He with biases) and seed: ``torch.func.jacrev`` for every
J_l, a Python loop over the layers (a chain is sequential), and two stable accumulations per layer:

* log σ_max(P_d): P̃_l = J_l P̃_{l−1} / ‖J_l P̃_{l−1}‖_F with the log-scales summed, so the
  product never under- or overflows; at each requested depth log σ_max = Σ log-scales +
  log σ_max(P̃_d). This is exact and is the checksum every implementation reproduces.
* the QR (Benettin) log-spectrum: Q_l R_l = J_l Q_{l−1}, Σ_l log|diag R_l| — the standard way to
  report log-spectra and Lyapunov exponents of long products (Benettin et al. 1980); reported in
  ``info``, not checksummed (it equals log σ_i(P_d) only up to an O(1) term at finite depth).

Needs only torch and NumPy. Usage:
``python benchmarks/deep_chain_torch.py [--scale full|quick|gpu] [--data DIR] [--device cpu|gpu]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser, torch_device  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.func import jacrev  # noqa: E402

import workloads  # noqa: E402

phases.imports_done()

NAME = "torch-func"
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def deep_chain(phi, weights, biases, h, depths):
    """log σ_max(P_d) and the QR log-spectrum at each depth d of one chain.

    Args:
      phi: the activation.
      weights: (D, n, n) tensor, (out, in) layout.
      biases: (D, n) tensor.
      h: (n,) input.
      depths: increasing depths ≤ D.

    Returns:
      ``(log_sigma_max (len(depths),), qr_log_spectrum (len(depths), n))``, float64 NumPy.
    """

    def block(W, b, h):
        out = phi(W @ h + b)
        return out, out

    n = h.shape[0]
    P = Q = torch.eye(n, device=h.device)
    log_scale = torch.zeros((), dtype=torch.float64, device=h.device)
    log_r = torch.zeros(n, dtype=torch.float64, device=h.device)
    top, spectra = [], []
    for layer in range(max(depths)):
        J, h = jacrev(block, argnums=2, has_aux=True)(weights[layer], biases[layer], h)
        P = J @ P
        scale = torch.linalg.matrix_norm(P)
        P = P / scale
        log_scale = log_scale + torch.log(scale.double())
        Q, R = torch.linalg.qr(J @ Q)
        log_r = log_r + torch.log(torch.abs(torch.diagonal(R)).double())
        if layer + 1 in depths:
            top.append(log_scale + torch.log(torch.linalg.svdvals(P)[0].double()))
            spectra.append(log_r.clone())
    return torch.stack(top).cpu().numpy(), torch.stack(spectra).cpu().numpy()


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    device = torch_device(args.device)
    spec = workloads.get_spec("deep-chain", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("deep-chain", args.scale, args.data)
        weights, biases, inputs = (
            torch.from_numpy(np.ascontiguousarray(a)).to(device)
            for a in (data.weights, data.biases, data.inputs)
        )
    log_sigma_max = np.empty((len(spec.chains), spec.seeds, len(spec.depths)))
    finite = {}
    with phases.time("run_s"):
        for c, (activation, _, _) in enumerate(spec.chains):
            for seed in range(spec.seeds):
                top, spectra = deep_chain(
                    ACTIVATIONS[activation],
                    weights[c, seed],
                    biases[c, seed],
                    inputs[seed],
                    spec.depths,
                )
                log_sigma_max[c, seed] = top
                finite[activation] = int(np.isfinite(spectra[-1]).sum())
    info = {"finite_qr_log_singular_values_at_max_depth": finite}
    emit("deep-chain", NAME, args.scale, workloads.deep_chain_checksum(log_sigma_max), phases, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
