"""The notes' ``compare_activations`` in PyTorch, as a whole process.

The notes' code as printed (``gradient-flow-notes.md``, "Comparing Activations"): for relu,
sigmoid and tanh, build ``nn.Sequential`` of 10 × (Linear(64, 64) + activation) + Linear(64, 1),
one forward and backward pass of ``nn.MSELoss`` on a batch of 32, and the weight-gradient norm of
every Linear. Two departures, both needed for a fair comparison: the weights and the batch are
the workload's shared arrays (copied in after construction) instead of torch's RNG, and the
figure is not drawn (plotting is the same matplotlib call on both sides, so it is left out of
both).

Needs only torch and NumPy. Usage: ``python benchmarks/notes_torch.py [--data DIR]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import workloads  # noqa: E402

phases.imports_done()

NAME = "torch-notes"


def load_shared(model, data, a):
    """Copies activation ``a``'s shared weights into the notes' freshly built model."""
    linears = [layer for layer in model if isinstance(layer, nn.Linear)]
    weights = list(data.hidden_weight[a]) + [data.out_weight[a]]
    biases = list(data.hidden_bias[a]) + [data.out_bias[a]]
    with torch.no_grad():
        for linear, W, b in zip(linears, weights, biases):
            linear.weight.copy_(torch.from_numpy(W.copy()))
            linear.bias.copy_(torch.from_numpy(b.copy()))


def compare_activations(spec, data):
    """The notes' function, minus the figure. Returns {activation: [norm per Linear]}."""
    results = {}
    for a, activation in enumerate(spec.activations):
        # Build network
        layers = []
        for _ in range(spec.depth):
            layers.append(nn.Linear(spec.width, spec.width))
            if activation == "relu":
                layers.append(nn.ReLU())
            elif activation == "sigmoid":
                layers.append(nn.Sigmoid())
            else:
                layers.append(nn.Tanh())
        layers.append(nn.Linear(spec.width, 1))
        model = nn.Sequential(*layers)
        load_shared(model, data, a)

        # Forward/backward
        x = torch.from_numpy(data.x[a].copy())
        y = torch.from_numpy(data.y[a].copy())
        loss = nn.MSELoss()(model(x), y)
        loss.backward()

        # Collect gradient norms
        norms = []
        for i, layer in enumerate(model):  # noqa: B007  (the notes' snippet, verbatim)
            if isinstance(layer, nn.Linear):
                norms.append(layer.weight.grad.norm().item())

        results[activation] = norms
    return results


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    spec = workloads.get_spec("notes", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("notes", args.scale, args.data)
    with phases.time("run_s"):
        results = compare_activations(spec, data)
    norms = [results[a] for a in spec.activations]
    emit(
        "notes",
        NAME,
        args.scale,
        workloads.notes_checksum(norms),
        phases,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
