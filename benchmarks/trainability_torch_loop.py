"""The trainability grid in PyTorch as a researcher writes it: one network at a time, as a whole
process.

For every (depth, σ_w², seed) configuration of ``workloads.TRAINABILITY``: an ``nn.Sequential``
(input Linear, ``depth`` × (Linear + Tanh), readout Linear) holding the workload's NumPy-drawn
initial parameters, ``torch.optim.SGD`` on ``F.cross_entropy`` over the shared minibatches, then
the final loss on the evaluation subset and the test accuracy. Python loops over the
configurations and the steps.

Needs only torch and NumPy (and scikit-learn when it draws the digits itself, without
``--data``). Usage:
``python benchmarks/trainability_torch_loop.py [--scale full|quick|gpu] [--data DIR] [--device cpu|gpu]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser, torch_device  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import workloads  # noqa: E402

phases.imports_done()

NAME = "torch-loop"


def build(layers, device):
    """The ``nn.Sequential`` of one configuration, holding ``layers`` = [(W, b), ...]."""
    modules = []
    for index, (W, b) in enumerate(layers):
        linear = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        modules.append(linear)
        if 0 < index < len(layers) - 1:  # the hidden layers; the input map is linear
            modules.append(nn.Tanh())
    return nn.Sequential(*modules).to(device)


def to_tensor(array, dtype, device):
    """A tensor on ``device`` holding a copy of ``array`` (the runner's files are read-only maps)."""
    return torch.from_numpy(np.array(array, dtype=dtype)).to(device)


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    device = torch_device(args.device)
    spec = workloads.get_spec("trainability", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("trainability", args.scale, args.data)
        x_train, x_test = (to_tensor(a, np.float32, device) for a in (data.x_train, data.x_test))
        y_train, y_test = (to_tensor(a, np.int64, device) for a in (data.y_train, data.y_test))
        batches = to_tensor(data.batches, np.int64, device)
    shape = (len(spec.depths), len(spec.sigma_w2), spec.seeds)
    final_loss, test_accuracy = np.empty(shape), np.empty(shape)
    with phases.time("run_s"):
        for d, depth in enumerate(spec.depths):
            for w, sigma_w2 in enumerate(spec.sigma_w2):
                for seed in range(spec.seeds):
                    layers = workloads.initial_parameters(spec, data, depth, sigma_w2, seed)
                    model = build(layers, device)
                    optimizer = torch.optim.SGD(model.parameters(), lr=spec.learning_rate)
                    for step in range(spec.steps):
                        index = batches[step]
                        loss = F.cross_entropy(model(x_train[index]), y_train[index])
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                    with torch.no_grad():
                        logits = model(x_train[: spec.eval_size])
                        final_loss[d, w, seed] = F.cross_entropy(
                            logits, y_train[: spec.eval_size]
                        ).item()
                        predicted = model(x_test).argmax(dim=1)
                        test_accuracy[d, w, seed] = (predicted == y_test).double().mean().item()
    checksums = workloads.trainability_checksum(final_loss)
    info = {
        "configs": spec.num_configs,
        "final_test_accuracy_mean": float(test_accuracy.mean()),
        "final_train_loss_by_depth": final_loss.mean(axis=(1, 2)).tolist(),
        "final_test_accuracy_by_depth": test_accuracy.mean(axis=(1, 2)).tolist(),
    }
    emit("trainability", NAME, args.scale, checksums, phases, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
