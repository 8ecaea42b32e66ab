"""The roofline: this machine's float32 matmul and small-SVD rates, and the spectra sweep's floor.

Measures, on the machine it runs on and with the library it is asked for (jax, torch or NumPy):

* the float32 rate of one large matmul (the machine's practical peak),
* the float32 rate of a batch of n×n matmuls at the workload's width (the shape of
  P_l = J_l P_{l−1}),
* the time per values-only SVD of a batch of n×n matrices (the shape of every decomposition in
  the sweep).

:func:`floor` turns a workload's counts (``workloads.SpectraSweep.counts``) and the best rates
measured into the least time any implementation can take: every SVD at the best batched rate
plus every matmul FLOP at the best batched rate, with the least work (one pass at the largest
depth). The runner prints it beside jaxflow's time.

Usage: ``python benchmarks/roofline.py --backend jax|torch|numpy [--width 64] [--device cpu|gpu]``
prints one result line (see ``protocol.py``) whose ``info`` holds the rates.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time

import numpy as np

from protocol import PREFIX, torch_device, use_jax_platform

BACKENDS = ("jax", "torch", "numpy")


def _median_time(fn, repeats: int = 5, min_time: float = 0.05) -> float:
    """Median seconds per call of ``fn`` (which must block until done), after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        times.append(elapsed / calls)
    return statistics.median(times)


def _svd_rate(rates: dict, name: str, call, batch: int) -> None:
    """Records µs per SVD of ``call`` as ``svd_us[name]``, or why it failed as ``svd_error[name]``
    (one algorithm a library or device lacks must not cost the other measurements)."""
    try:
        rates[f"svd_us[{name}]"] = _median_time(call, repeats=3) / batch * 1e6
    except Exception as exc:  # noqa: BLE001 - reported in the result, never silent
        rates[f"svd_error[{name}]"] = f"{type(exc).__name__}: {str(exc)[:300]}"


def _sizes(width: int, device: str) -> dict:
    """Problem sizes: ~1 GFLOP of batched matmul, ~2,000 SVDs, a large square matmul."""
    large = 4096 if device == "gpu" else 2048
    batch_mm = max(16, int(2e9 // (2 * width**3)))
    # A GPU's small-SVD time is dominated by launches, not FLOPs: scale its batch more gently.
    batch_svd = (
        max(8, int(2048 * (64 / width) ** 3))
        if device == "cpu"
        else max(256, int(4096 * (64 / width) ** 2))
    )
    return {"large": large, "batch_matmul": batch_mm, "batch_svd": batch_svd}


def _operands(width, sizes):
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((sizes["large"], sizes["large"]), np.float32),
        rng.standard_normal((sizes["batch_matmul"], width, width), np.float32),
        rng.standard_normal((sizes["batch_svd"], width, width), np.float32),
    )


def measure_jax(width: int, device: str) -> dict:
    """Rates with jax (``jit``, ``Precision.HIGHEST``; every SVD algorithm of the device)."""
    use_jax_platform(device)
    import jax
    import jax.numpy as jnp

    sizes = _sizes(width, device)
    large, batch, svd_batch = (jnp.asarray(a) for a in _operands(width, sizes))
    mm = jax.jit(lambda a, b: jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST))
    rates = {
        "matmul_large_gflops": 2
        * sizes["large"] ** 3
        / _median_time(lambda: mm(large, large).block_until_ready())
        / 1e9,
        "matmul_batched_gflops": 2
        * width**3
        * sizes["batch_matmul"]
        / _median_time(lambda: mm(batch, batch).block_until_ready())
        / 1e9,
    }
    # CPU: LAPACK gesdd (default) and gesvd (QR); GPU: cuSOLVER gesvdj (default), gesvd, gesvdp,
    # and jaxflow's own Jacobi.
    lin = jax.lax.linalg
    algorithms = {"default": None, "qr": lin.SvdAlgorithm.QR}
    if device == "gpu":
        algorithms.update(jacobi=lin.SvdAlgorithm.JACOBI, polar=lin.SvdAlgorithm.POLAR)
    for name, algorithm in algorithms.items():
        svd = jax.jit(
            lambda a, algorithm=algorithm: jax.lax.linalg.svd(
                a, full_matrices=False, compute_uv=False, algorithm=algorithm
            )
        )
        _svd_rate(rates, name, lambda: svd(svd_batch).block_until_ready(), sizes["batch_svd"])
    if device == "gpu":  # jaxflow's one-sided Jacobi in JAX operations (no cuSOLVER); on a
        # CPU it is 3-13x slower than LAPACK (benchmarks/svd_methods.py) and not worth the time
        import jaxflow as jf

        jacobi = jax.jit(jf.jacobi_singular_values)
        _svd_rate(
            rates,
            "jaxflow-jacobi",
            lambda: jacobi(svd_batch).block_until_ready(),
            sizes["batch_svd"],
        )
    device_kind = jax.devices()[0].device_kind
    return {
        "backend": "jax",
        "version": jax.__version__,
        "device_kind": device_kind,
        "sizes": sizes,
        **rates,
    }


def measure_torch(width: int, device: str) -> dict:
    """Rates with torch (float32, TF32 off; on a GPU every ``svdvals`` driver)."""
    import torch

    dev = torch_device(device)
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    sizes = _sizes(width, device)
    large, batch, svd_batch = (torch.from_numpy(a).to(dev) for a in _operands(width, sizes))

    def timed(fn):
        def call():
            fn()
            sync()

        return _median_time(call)

    rates = {
        "matmul_large_gflops": 2 * sizes["large"] ** 3 / timed(lambda: large @ large) / 1e9,
        "matmul_batched_gflops": 2
        * width**3
        * sizes["batch_matmul"]
        / timed(lambda: batch @ batch)
        / 1e9,
    }
    drivers = {"default": None}
    if device == "gpu":
        drivers.update(gesvd="gesvd", gesvdj="gesvdj")
    for name, driver in drivers.items():
        call = functools.partial(torch.linalg.svdvals, svd_batch, driver=driver)
        _svd_rate(rates, name, lambda call=call: (call(), sync()), sizes["batch_svd"])
    kind = torch.cuda.get_device_name() if device == "gpu" else "cpu"
    return {
        "backend": "torch",
        "version": torch.__version__,
        "device_kind": kind,
        "threads": torch.get_num_threads(),
        "sizes": sizes,
        **rates,
    }


def measure_numpy(width: int, device: str) -> dict:
    """Rates with NumPy's BLAS and LAPACK (CPU only)."""
    if device != "cpu":
        raise SystemExit("--backend numpy runs on the CPU only")
    sizes = _sizes(width, device)
    large, batch, svd_batch = _operands(width, sizes)
    return {
        "backend": "numpy",
        "version": np.__version__,
        "device_kind": "cpu",
        "sizes": sizes,
        "matmul_large_gflops": 2 * sizes["large"] ** 3 / _median_time(lambda: large @ large) / 1e9,
        "matmul_batched_gflops": 2
        * width**3
        * sizes["batch_matmul"]
        / _median_time(lambda: batch @ batch)
        / 1e9,
        "svd_us[default]": _median_time(
            lambda: np.linalg.svd(svd_batch, compute_uv=False), repeats=3
        )
        / sizes["batch_svd"]
        * 1e6,
    }


def best_rates(measurements: list[dict]) -> dict:
    """The best matmul rates and SVD time over every backend and algorithm measured, with where
    each came from.

    Args:
      measurements: the ``info`` dicts of roofline results (one per backend).

    Returns:
      ``{"matmul_large_gflops", "matmul_batched_gflops", "svd_us"}`` each as ``(value, source)``.
    """
    best = {}
    for m in measurements:
        for key, value in m.items():
            if key.startswith("svd_us["):
                name, better = "svd_us", lambda new, old: new < old
            elif key in ("matmul_large_gflops", "matmul_batched_gflops"):
                name, better = key, lambda new, old: new > old
            else:
                continue
            source = (
                f"{m['backend']} {key.removeprefix('svd_us')}" if name == "svd_us" else m["backend"]
            )
            if name not in best or better(value, best[name][0]):
                best[name] = (value, source)
    return best


def floor(counts: dict, rates: dict) -> dict:
    """The least time the workload can take on this machine at the best measured rates.

    Args:
      counts: ``SpectraSweep.counts(reuse_prefixes=True)``.
      rates: :func:`best_rates`.

    Returns:
      ``{"svd_s", "matmul_s", "floor_s"}``: SVDs at the best batched SVD time, all matmul FLOPs
      (products, Jacobians, forward) at the best batched matmul rate, and their sum.
    """
    svd_s = counts["svds"] * rates["svd_us"][0] * 1e-6
    flops = counts["product_flops"] + counts["jacobian_flops"] + counts["forward_flops"]
    matmul_s = flops / (rates["matmul_batched_gflops"][0] * 1e9)
    return {"svd_s": svd_s, "matmul_s": matmul_s, "floor_s": svd_s + matmul_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=BACKENDS, required=True)
    p.add_argument("--width", type=int, default=64, help="matrix size n of the batched work")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = p.parse_args(argv)
    measure = {"jax": measure_jax, "torch": measure_torch, "numpy": measure_numpy}[args.backend]
    info = {**measure(args.width, args.device), "width": args.width}
    record = {
        "workload": "roofline",
        "implementation": args.backend,
        "scale": f"width={args.width}",
        "status": "ok",
        "checksums": {},
        "phases": {},
        "info": info,
    }
    print(PREFIX + json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
