"""Validate infermon on a real GPU: ceilings, a decode loop at growing batch, and the claims that matter.

    python3 bench/gpu_check.py --out DIR          # on a GPU machine (under 6 minutes)
    python3 bench/gpu_check.py --cpu --out DIR    # dry run on the CPU, small sizes (CI runs this)

1. The GPU, driver, NVML/GPM support, and measured ceilings (a large device-to-device copy for
   bandwidth, a large bf16 matmul for FLOP/s) beside the datasheet table's figures.
2. A random-weight Llama-style decoder in bf16 (~3.9B parameters in four wide layers, so each
   decode step is a few large matmuls) generating at batch 1, 4, 16, 64 and 256 in a child process
   with the agent inside, while infermon's probes sample it: tokens/s, modeled and GPM-measured
   bandwidth, MBU, MFU, the verdict, torch allocator vs NVML per-process memory.
3. A table and a pass/fail line per claim. Uses only infermon's probes and model layer (no TUI),
   torch, psutil, nvidia-ml-py, numpy and prometheus_client; no network.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

GPU_BATCHES = (1, 4, 16, 64, 256)
CPU_BATCHES = (1, 4)


class Log:
    """Print and keep every line for --out."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def measure_gpu_ceilings(log: Log) -> dict:
    """Device-to-device copy (bytes read + written ÷ time) and a bf16 matmul (2n³ ÷ time), best of several."""
    import torch

    device = torch.device("cuda")
    size = 2 * 2**30
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best_copy = float("inf")
    for _ in range(10):
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        best_copy = min(best_copy, start.elapsed_time(end) / 1e3)
    del src, dst
    n = 8192
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    for _ in range(3):
        a @ b
    best_mm = float("inf")
    for _ in range(20):
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        best_mm = min(best_mm, start.elapsed_time(end) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return {"bandwidth_bytes_per_s": 2 * size / best_copy, "peak_flops": 2 * n**3 / best_mm,
            "how": f"copy of {size / 2**30:.0f} GiB device-to-device, bf16 matmul {n}³, best of 10/20"}


def measure_cpu_ceilings(log: Log) -> dict:
    from infermon.probes.host import calibrate

    ceilings = calibrate(1.0)
    return {"bandwidth_bytes_per_s": ceilings.bandwidth_bytes_per_s, "peak_flops": ceilings.peak_flops,
            "how": ceilings.source}


def environment(log: Log, cpu: bool) -> dict:
    from infermon.model.gpu import find_gpu
    from infermon.probes.nvml import NvmlProbe

    info: dict = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["torch_cuda"] = torch.version.cuda
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        info["torch"] = f"unavailable: {exc}"
    probe = NvmlProbe()
    probe.start()
    info["nvml_available"] = probe.available
    info["nvml_why"] = probe.why
    info["driver"] = probe.driver_version
    info["nvml_version"] = probe.nvml_version
    devices = probe.sample(frozenset()) if probe.available else ()
    time.sleep(0.2)
    devices = probe.sample(frozenset()) if probe.available else devices
    info["devices"] = [{"index": d.index, "name": d.name, "memory_total_bytes": d.memory_total_bytes,
                        "derived_bandwidth_bytes_per_s": d.derived_bandwidth_bytes_per_s,
                        "gpm_supported": d.gpm_supported, "gpm_why": d.why.get("dram_bandwidth_util"),
                        "why": d.why} for d in devices]
    probe.close()
    gpu = find_gpu(devices[0].name) if devices and devices[0].name else None
    info["table_row"] = None if gpu is None else {
        "name": gpu.name, "memory_bytes": gpu.memory_bytes, "bandwidth_bytes_per_s": gpu.bandwidth_bytes_per_s,
        "bf16_flops": gpu.peak_flops.get("bf16"), "source": gpu.source}
    log(f"Python {info['python']} on {info['machine']}; torch {info.get('torch')} (CUDA {info.get('torch_cuda')}, "
        f"available: {info.get('cuda_available')})")
    log(f"NVML: {'driver ' + str(info['driver']) + ', NVML ' + str(info['nvml_version']) if probe.available else info['nvml_why']}")
    for d in info["devices"]:
        log(f"GPU {d['index']}: {d['name']}, {d['memory_total_bytes'] / 1e9 if d['memory_total_bytes'] else 0:.1f} GB, "
            f"bus×clock bandwidth {(d['derived_bandwidth_bytes_per_s'] or 0) / 1e12:.2f} TB/s, "
            f"GPM {'supported' if d['gpm_supported'] else 'no: ' + str(d['gpm_why'])}")
    if not cpu and gpu is None and devices:
        log(f"warning: {devices[0].name} is not in infermon's GPU table")
    return info


def run_batch(batch: int, cpu: bool, seconds: float, bootstrap: str, log: Log, host: dict | None) -> dict:
    """One child generating at ``batch``, sampled by infermon's probes for ``seconds``."""
    from infermon.probes.agent_channel import read_agents
    from infermon.probes.bootstrap import agent_environment
    from infermon.live.derive import Deriver
    from infermon.probes.sampler import Sampler, SamplerConfig

    command = [sys.executable, "-m", "infermon.cli.demo_workload", "--batch", str(batch), "--prompt", "16",
               "--new", "256", "--seconds", str(seconds + 120)]
    command += ["--size", "tiny", "--device", "cpu", "--dtype", "fp32"] if cpu else \
        ["--size", "gpu-check", "--device", "cuda", "--dtype", "bf16"]
    env = agent_environment(bootstrap, 0.5)
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    result: dict = {"batch": batch, "probe_errors": []}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            agents = read_agents({child.pid}).agents
            if agents and agents[0].generation_tokens_total > 0:
                break
            time.sleep(0.2)
        if child.poll() is not None:
            result["error"] = f"the workload exited: {child.stderr.read()[-500:]}"
            return result
        time.sleep(1.0)  # past the first rounds' warm-up
        overrides = host or {}
        sampler = Sampler(SamplerConfig(pid=child.pid, interval_s=0.5, host_overrides=overrides))
        live = Deriver()
        views = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            try:
                views.append(live.update(sampler.tick()))
            except Exception:  # noqa: BLE001 - the claim is that this never happens
                result["probe_errors"].append(traceback.format_exc())
            time.sleep(max(0.0, 0.5 - (time.monotonic() - began)))
        sampler.close()
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    busy = [v for v in views[1:] if v.figures.generation_tokens_per_s.value]
    internal = [f"{k}: {v}" for view in views for k, v in view.why.items() if "internal error" in str(v)]
    result["probe_errors"] += internal

    def median(name):
        values = [getattr(v.figures, name).value for v in busy if getattr(v.figures, name).value is not None]
        return statistics.median(values) if values else None

    result.update(
        samples=len(views),
        tokens_per_s=median("generation_tokens_per_s"),
        modeled_bandwidth=median("bandwidth_modeled_bytes_per_s"),
        measured_bandwidth=median("bandwidth_measured_bytes_per_s"),
        measured_why=next((v.figures.bandwidth_measured_bytes_per_s.why for v in busy
                           if v.figures.bandwidth_measured_bytes_per_s.value is None), None),
        flops=median("flops_modeled_per_s"),
        mbu=median("mbu"),
        mbu_measured=median("mbu_measured"),
        mfu=median("mfu"),
        intensity=median("operating_intensity"),
        ridge=median("ops_per_byte"),
        bound=collections.Counter(v.verdict.bound for v in busy).most_common(1)[0][0] if busy else None,
        verdict=collections.Counter(v.verdict.finding for v in busy).most_common(1)[0][0] if busy else None,
        model=views[-1].model.name if views and views[-1].model else None,
        params=views[-1].model.params_total if views and views[-1].model else None,
        hardware=views[-1].hardware.name if views and views[-1].hardware else None,
        nvml_process_bytes=max((p.used_bytes or 0 for v in views for d in v.devices
                                for p in d.processes if p.pid == child.pid), default=None) or None,
        torch_reserved_bytes=max((a.torch_reserved_bytes or 0 for v in views for a in v.agents), default=None) or None,
        torch_allocated_bytes=max((a.torch_allocated_bytes or 0 for v in views for a in v.agents), default=None) or None,
    )
    log(f"batch {batch:>3}: {fmt(result['tokens_per_s'], '{:,.0f}')} tok/s, modeled {fmt(result['modeled_bandwidth'], '{:.3g}', 1e-9)} GB/s, "
        f"measured {fmt(result['measured_bandwidth'], '{:.3g}', 1e-9)} GB/s, MBU {fmt(result['mbu'], '{:.0%}')}, "
        f"MFU {fmt(result['mfu'], '{:.1%}')}, {result['bound']}: {result['verdict']}")
    return result


def fmt(value, pattern: str, scale: float = 1.0) -> str:
    return "n/a" if value is None else pattern.format(value * scale)


def claims(results: list[dict], cpu: bool, errors: list[str]) -> list[tuple[str, str, str]]:
    """(claim, PASS/FAIL/n/a, detail)."""
    out = []
    first, last = results[0], results[-1]
    if first.get("measured_bandwidth") and first.get("modeled_bandwidth"):
        gap = abs(first["modeled_bandwidth"] - first["measured_bandwidth"]) / first["measured_bandwidth"]
        out.append(("modeled vs measured bandwidth within 15% at batch 1", "PASS" if gap <= 0.15 else "FAIL",
                    f"modeled {first['modeled_bandwidth'] / 1e9:.1f} GB/s, measured {first['measured_bandwidth'] / 1e9:.1f} GB/s ({gap:.0%} apart)"))
    else:
        out.append(("modeled vs measured bandwidth within 15% at batch 1", "n/a",
                    first.get("measured_why") or "no measured bandwidth (no GPU, or GPM unavailable)"))
    out.append(("verdict memory-bound at batch 1", "PASS" if first.get("bound") == "memory" else "FAIL",
                str(first.get("verdict"))))
    near = last.get("intensity") and last.get("ridge") and last["intensity"] >= 0.5 * last["ridge"]
    out.append((f"compute-bound (or near the ridge) at batch {last['batch']}",
                "PASS" if last.get("bound") == "compute" or near else ("n/a" if cpu else "FAIL"),
                f"intensity {fmt(last.get('intensity'), '{:.1f}')} vs ridge {fmt(last.get('ridge'), '{:.1f}')} FLOP/B; {last.get('verdict')}"))
    pairs = [(r["nvml_process_bytes"], r["torch_reserved_bytes"]) for r in results
             if r.get("nvml_process_bytes") and r.get("torch_reserved_bytes")]
    if pairs:
        ok = all(nvml >= reserved for nvml, reserved in pairs)
        out.append(("NVML per-process memory ≥ torch reserved", "PASS" if ok else "FAIL",
                    "; ".join(f"{n / 1e9:.2f} GB ≥ {t / 1e9:.2f} GB" for n, t in pairs)))
    else:
        out.append(("NVML per-process memory ≥ torch reserved", "n/a", "no GPU process memory or no CUDA allocator"))
    probe_errors = errors + [e for r in results for e in r.get("probe_errors", [])]
    out.append(("no probe raised", "PASS" if not probe_errors else "FAIL",
                f"{len(probe_errors)} errors" + (f": {probe_errors[0][:200]}" if probe_errors else "")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", metavar="DIR", help="write gpu_check.log and gpu_check.json here")
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU with small sizes")
    parser.add_argument("--seconds", type=float, default=None, help="sampling time per batch (GPU 10, CPU 3)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes")
    args = parser.parse_args()
    log = Log()
    started = time.monotonic()
    cpu = args.cpu
    batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else (CPU_BATCHES if cpu else GPU_BATCHES)
    seconds = args.seconds or (3.0 if cpu else 10.0)
    log(f"infermon GPU check, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, mode {'CPU dry run' if cpu else 'GPU'}")
    errors: list[str] = []
    info = environment(log, cpu)
    if not cpu and not info.get("cuda_available"):
        log("no CUDA device visible to torch: use --cpu for a dry run")
        return 2
    ceilings = measure_cpu_ceilings(log) if cpu else measure_gpu_ceilings(log)
    table = info.get("table_row") or {}
    log("")
    log(f"{'ceiling':<24}{'table (datasheet)':>20}{'measured':>16}{'ratio':>8}")
    flops_label = "fp32 FLOP/s (host)" if cpu else "bf16 dense FLOP/s"
    for label, key, table_key, unit, suffix in (("bandwidth", "bandwidth_bytes_per_s", "bandwidth_bytes_per_s", 1e9, " GB/s"),
                                                (flops_label, "peak_flops", "bf16_flops", 1e9 if cpu else 1e12,
                                                 " GFLOP/s" if cpu else " TFLOP/s")):
        measured, datasheet = ceilings.get(key), table.get(table_key)
        ratio = f"{measured / datasheet:.0%}" if measured and datasheet else "n/a"
        log(f"{label:<24}{fmt(datasheet, '{:,.0f}', 1 / unit) + suffix:>20}{fmt(measured, '{:,.0f}', 1 / unit) + suffix:>16}{ratio:>8}")
    log(f"  ({ceilings['how']})")
    log("")
    from infermon.probes.bootstrap import make_bootstrap

    bootstrap = make_bootstrap()
    host = None
    if cpu:
        host = {"bandwidth_bytes_per_s": ceilings["bandwidth_bytes_per_s"], "peak_flops": ceilings["peak_flops"]}
    results = []
    try:
        for batch in batches:
            try:
                results.append(run_batch(batch, cpu, seconds, bootstrap, log, host))
            except Exception:  # noqa: BLE001 - recorded as a failed claim
                errors.append(traceback.format_exc())
                log(f"batch {batch}: failed: {errors[-1].splitlines()[-1]}")
                results.append({"batch": batch, "probe_errors": []})
    finally:
        shutil.rmtree(bootstrap, ignore_errors=True)
    log("")
    log(f"{'batch':>5} {'tok/s':>10} {'modeled GB/s':>13} {'measured GB/s':>14} {'MBU':>6} {'MFU':>7} "
        f"{'bound':>8} {'torch resv GB':>14} {'NVML proc GB':>13}")
    for r in results:
        log(f"{r['batch']:>5} {fmt(r.get('tokens_per_s'), '{:,.0f}'):>10} {fmt(r.get('modeled_bandwidth'), '{:,.1f}', 1e-9):>13} "
            f"{fmt(r.get('measured_bandwidth'), '{:,.1f}', 1e-9):>14} {fmt(r.get('mbu'), '{:.0%}'):>6} "
            f"{fmt(r.get('mfu'), '{:.1%}'):>7} {str(r.get('bound')):>8} {fmt(r.get('torch_reserved_bytes'), '{:.2f}', 1e-9):>14} "
            f"{fmt(r.get('nvml_process_bytes'), '{:.2f}', 1e-9):>13}")
    if results and results[0].get("model"):
        log(f"model: {results[0]['model']}, {results[0]['params']:,} parameters; device: {results[0]['hardware']}")
    log("")
    verdicts = claims(results, cpu, errors) if results else []
    for claim, status, detail in verdicts:
        log(f"{status:<5} {claim}: {detail}")
    counts = collections.Counter(status for _, status, _ in verdicts)
    log(f"RESULT: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['n/a']} n/a "
        f"in {time.monotonic() - started:.0f} s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.log").write_text("\n".join(log.lines) + "\n")
        (out / "gpu_check.json").write_text(json.dumps({"environment": info, "ceilings": ceilings,
                                                        "results": results, "claims": verdicts}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
