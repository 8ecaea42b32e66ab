"""The best PyTorch a strong user writes for the spectra sweep, as a whole process.

``torch.func.jacrev`` for every J_l, ``torch.func.vmap`` over seeds and inputs, one batched
``torch.linalg.svdvals`` per configuration for all J_l and another for all P_l; Python loops only
over the configurations (activation × init × depth) and, inside the vmapped chain, over layers.
Each depth is its own configuration, as a loop over configurations computes it.

Needs only torch and NumPy (not jax, not jaxflow). Usage:
``python benchmarks/spectra_torch_func.py [--scale full|quick|gpu] [--data DIR] [--device cpu|gpu]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser, torch_device  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.func import jacrev, vmap  # noqa: E402

import workloads  # noqa: E402

phases.imports_done()

NAME = "torch-func"
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def chain_jacobians(phi, weights, h):
    """Every J_l = ∂h_l/∂h_{l−1} of one chain. weights: (d, n, n); h: (n,). Returns (d, n, n)."""

    def block(W, h):
        out = phi(W @ h)
        return out, out

    jacobians = []
    for W in weights:
        J, h = jacrev(block, argnums=1, has_aux=True)(W, h)
        jacobians.append(J)
    return torch.stack(jacobians)


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    device = torch_device(args.device)
    spec = workloads.get_spec("spectra", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("spectra", args.scale, args.data)
        weights = torch.from_numpy(np.ascontiguousarray(data.weights)).to(device)
        inputs = torch.from_numpy(np.ascontiguousarray(data.inputs)).to(device)
    checksum = workloads.SpectraChecksum()
    with phases.time("run_s"):
        for activation in spec.activations:
            phi = ACTIVATIONS[activation]
            over_inputs = vmap(lambda w, h: chain_jacobians(phi, w, h), in_dims=(None, 0))
            over_seeds = vmap(over_inputs, in_dims=(0, 0))
            for i in range(len(spec.inits)):
                for depth in spec.depths:
                    J = over_seeds(weights[i, :, :depth], inputs)  # (seeds, inputs, d, n, n)
                    P, products = torch.eye(spec.width, device=device), []
                    for layer in range(depth):
                        P = J[..., layer, :, :] @ P
                        products.append(P)
                    layer_sv = torch.linalg.svdvals(J)
                    product_sv = torch.linalg.svdvals(torch.stack(products, dim=-3))
                    checksum.add(layer_sv.cpu().numpy(), product_sv.cpu().numpy())
    emit("spectra", NAME, args.scale, checksum.values(), phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
