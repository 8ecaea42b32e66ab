"""The tutorial-style PyTorch loop for the spectra sweep, as a whole process.

What the tutorials teach: build an ``nn.Sequential`` per configuration, walk it layer by layer
in Python, take each J_l with ``torch.autograd.functional.jacobian``, multiply P_l = J_l P_{l−1},
and call ``torch.linalg.svdvals`` on each matrix. Python loops over everything: activation, init,
depth, seed, input and layer.

Needs only torch and NumPy (not jax, not jaxflow). Usage:
``python benchmarks/spectra_torch_tutorial.py [--scale S] [--data DIR] [--device cpu|gpu]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser, torch_device  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.autograd.functional import jacobian  # noqa: E402

import workloads  # noqa: E402

phases.imports_done()

NAME = "torch-tutorial"
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def build_model(activation, weights, device):
    """nn.Sequential of (Linear without bias, activation) blocks holding ``weights`` (d, n, n)."""
    layers = []
    for W in weights:
        linear = nn.Linear(W.shape[1], W.shape[0], bias=False)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
        layers += [linear, ACTIVATIONS[activation]()]
    return nn.Sequential(*layers).to(device)


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    device = torch_device(args.device)
    spec = workloads.get_spec("spectra", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("spectra", args.scale, args.data)
    checksum = workloads.SpectraChecksum()
    with phases.time("run_s"):
        for activation in spec.activations:
            for i in range(len(spec.inits)):
                for depth in spec.depths:
                    for seed in range(spec.seeds):
                        model = build_model(activation, data.weights[i, seed, :depth], device)
                        for k in range(spec.inputs):
                            h = torch.from_numpy(data.inputs[seed, k].copy()).to(device)
                            P = torch.eye(spec.width, device=device)
                            layer_sv, product_sv = [], []
                            for layer in range(depth):
                                block = model[2 * layer : 2 * layer + 2]
                                J = jacobian(block, h)
                                with torch.no_grad():
                                    h = block(h)
                                P = J @ P
                                layer_sv.append(torch.linalg.svdvals(J))
                                product_sv.append(torch.linalg.svdvals(P))
                            checksum.add(
                                torch.stack(layer_sv).cpu().numpy(),
                                torch.stack(product_sv).cpu().numpy(),
                            )
    emit("spectra", NAME, args.scale, checksum.values(), phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
