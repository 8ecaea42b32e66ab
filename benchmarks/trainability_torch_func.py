"""The trainability grid in the best PyTorch: ``torch.func.functional_call`` + ``vmap`` over
stacked parameters, one vmapped program per depth, as a whole process.

For each depth of ``workloads.TRAINABILITY``, the initial parameters of every (σ_w², seed)
configuration (the workload's NumPy draws) are stacked on a leading axis; one SGD step for all of
them is ``vmap(grad(loss))`` of a ``functional_call`` of one template ``nn.Sequential``, followed
by p ← p − η·g on the stacked tensors. Every configuration sees the same minibatch at each step
(the workload's shared order), so the batch is not mapped. Python loops over depths and steps.

Needs only torch and NumPy (and scikit-learn when it draws the digits itself, without
``--data``). Usage:
``python benchmarks/trainability_torch_func.py [--scale full|quick|gpu] [--data DIR] [--device cpu|gpu]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser, torch_device  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.func import functional_call, grad, vmap  # noqa: E402

import workloads  # noqa: E402

phases.imports_done()

NAME = "torch-func"


def template(depth, width, features, classes):
    """The architecture of a depth-``depth`` network (its own parameters are never used)."""
    modules = [nn.Linear(features, width)]
    for _ in range(depth):
        modules += [nn.Linear(width, width), nn.Tanh()]
    modules.append(nn.Linear(width, classes))
    return nn.Sequential(*modules).to("meta")


def stacked_parameters(spec, data, depth, device):
    """{name: (configs, ...)} for ``template(depth, ...)``, configs ordered (σ_w², seed)."""
    per_config = [
        workloads.initial_parameters(spec, data, depth, sigma_w2, seed)
        for sigma_w2 in spec.sigma_w2
        for seed in range(spec.seeds)
    ]
    # nn.Sequential names: input "0", hidden Linears "1", "3", …, readout "2·depth + 1".
    names = [0] + [1 + 2 * l for l in range(depth)] + [2 * depth + 1]
    params = {}
    for layer, index in enumerate(names):
        for k, key in enumerate(("weight", "bias")):
            values = np.stack([config[layer][k] for config in per_config])
            params[f"{index}.{key}"] = torch.from_numpy(values).to(device)
    return params


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
            model = template(depth, spec.width, data.x_train.shape[1], data.g_out.shape[1])

            def loss_fn(params, x, y, model=model):
                return F.cross_entropy(functional_call(model, params, (x,)), y)

            def logits_fn(params, x, model=model):
                return functional_call(model, params, (x,))

            step_grads = vmap(grad(loss_fn), in_dims=(0, None, None))
            params = stacked_parameters(spec, data, depth, device)
            for step in range(spec.steps):
                index = batches[step]
                grads = step_grads(params, x_train[index], y_train[index])
                params = {k: p - spec.learning_rate * grads[k] for k, p in params.items()}
            with torch.no_grad():
                evaluate = vmap(loss_fn, in_dims=(0, None, None))
                n = spec.eval_size
                loss = evaluate(params, x_train[:n], y_train[:n])
                predicted = vmap(logits_fn, in_dims=(0, None))(params, x_test).argmax(dim=-1)
                accuracy = (predicted == y_test).double().mean(dim=-1)
            final_loss[d] = loss.double().cpu().numpy().reshape(shape[1:])
            test_accuracy[d] = accuracy.cpu().numpy().reshape(shape[1:])
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
