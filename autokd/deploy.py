"""A student as a deployable artefact: its activation memory, an fp32 ONNX file with the normalisation inside, an
int8 ONNX file by post-training static quantisation (ONNX Runtime's quantiser, calibrated on training images), its
accuracy re-measured in ONNX Runtime, and latency measured the same way for both (median of repeated runs).

ONNX Runtime (`pip install onnxruntime`) is optional: without it, int8 export says so and latency is measured in
torch."""

from __future__ import annotations

import copy
import io
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autokd.fsutil import write_atomic

ONNX_INPUT = "images"  # float32 NCHW in [0, 1] (pixel / 255)


def activation_mb(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Activation memory of one image's training forward pass: the bytes of every leaf module's output in fp32,
    all of which autograd keeps for the backward pass (MB)."""
    total = 0
    hooks = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * 4

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was)
    for h in hooks:
        h.remove()
    return total / 2**20


class Normalized(nn.Module):
    """The student with its input normalisation inside: takes images scaled to [0, 1] (pixel / 255), NCHW."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path, mean: tuple[float, ...],
                std: tuple[float, ...]) -> str | None:
    """ONNX with a dynamic batch and the normalisation in the graph: input `images` is float NCHW in [0, 1].
    The constants are also in the model's metadata. Returns None, or the reason it failed. The caller's model is
    left as it was (a copy is exported)."""
    model = copy.deepcopy(model).cpu().eval()
    if hasattr(model, "arithmetic"):
        model.arithmetic = "reference"  # plain ops: the graph any runtime knows
    wrapped = Normalized(model, mean, std).eval()
    try:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: pooling sizes are fixed per architecture
            torch.onnx.export(wrapped, (torch.zeros(2, *input_shape),), buf, input_names=[ONNX_INPUT],
                              output_names=["logits"], dynamic_axes={ONNX_INPUT: {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)
        import onnx

        proto = onnx.load_from_string(buf.getvalue())
        for key, value in {"autokd.input": "float32 NCHW images scaled to [0, 1] (pixel / 255)",
                           "autokd.mean": json.dumps(list(mean)), "autokd.std": json.dumps(list(std)),
                           "autokd.normalisation": "inside the graph: (images - mean) / std"}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        write_atomic(path, proto.SerializeToString())
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # quantised graphs log one warning per node otherwise
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def quantize_int8(fp32: Path, out: Path, calibration: torch.Tensor, batch: int = 64) -> str | None:
    """Post-training static quantisation (ONNX Runtime: QDQ format, int8 weights per output channel, uint8
    activations, MinMax ranges over `calibration`: uint8 images (N, C, H, W) from the training split). Returns
    None, or why it failed (ONNX Runtime absent, an operator it cannot quantise)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    images = calibration.float().div(255.0).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{ONNX_INPUT: images[i:i + batch]} for i in range(0, len(images), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    pre = out.with_name(out.stem + ".pre.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32), str(pre))  # shape inference and graph folding, as ORT recommends
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return None
    except Exception as exc:
        out.unlink(missing_ok=True)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        pre.unlink(missing_ok=True)


def onnx_accuracy(path: Path, images: torch.Tensor, labels: torch.Tensor, batch: int = 256,
                  threads: int | None = None) -> float:
    """Top-1 accuracy of an ONNX student (as export_onnx writes it) in ONNX Runtime on uint8 images (N, C, H, W)."""
    sess = _session(path, threads or torch.get_num_threads())
    correct = 0
    for i in range(0, len(images), batch):
        x = images[i:i + batch].float().div(255.0).numpy()
        logits = sess.run(None, {ONNX_INPUT: x})[0]
        correct += int((logits.argmax(1) == labels[i:i + batch].numpy()).sum())
    return correct / len(images)


def latency_ms(target: Path | nn.Module, input_shape: tuple[int, ...], batch: int, threads: int = 1,
               repeats: int | None = None, warmup: int = 10) -> dict[str, Any]:
    """Median wall time of one forward pass of `batch` images (ms): an ONNX file in ONNX Runtime, or a module in
    torch, on `threads` threads; the machine is recorded with it, because the figure means nothing elsewhere."""
    repeats = repeats or (200 if batch == 1 else 30)
    x = np.random.default_rng(0).random((batch, *input_shape), dtype=np.float32)
    if isinstance(target, nn.Module):
        model = target.eval()
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        xt = torch.from_numpy(x)

        def run() -> None:
            with torch.inference_mode():
                model(xt)
        runtime = f"torch {torch.__version__}"
    else:
        import onnxruntime as ort

        sess = _session(target, threads)

        def run() -> None:
            sess.run(None, {ONNX_INPUT: x})
        runtime = f"onnxruntime {ort.__version__}"
    try:
        for _ in range(warmup):
            run()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    finally:
        if isinstance(target, nn.Module):
            torch.set_num_threads(old)
    return {"median_ms": round(1000 * statistics.median(times), 4), "batch": batch, "threads": threads,
            "repeats": repeats, "runtime": runtime, "cpu": cpu_model()}


def int8_variant(fp32: Path, calibration: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
                 input_shape: tuple[int, ...], threads: int = 1) -> dict[str, Any]:
    """Writes `<fp32 stem>.int8.onnx` next to the fp32 file and says what quantisation cost: both files' test
    accuracy in ONNX Runtime and their latency at batch 1 and 64 (measured alternately, so that a neighbour's load
    falls on both alike). Plain data; `int8_error` says why there is no int8 file."""
    out = fp32.with_name(fp32.stem + ".int8.onnx")
    error = quantize_int8(fp32, out, calibration)
    if error:
        return {"int8_error": error}
    facts: dict[str, Any] = {"int8_file": out.name, "calibration_images": len(calibration),
                             "fp32_onnx_test_acc": onnx_accuracy(fp32, test_images, test_labels, threads=threads),
                             "int8_test_acc": onnx_accuracy(out, test_images, test_labels, threads=threads),
                             "latency": {}}
    for batch in (1, 64):
        runs = {"fp32": [], "int8": []}
        for _ in range(3):  # alternate: a slower spell of the machine costs both files alike
            for name, path in (("fp32", fp32), ("int8", out)):
                runs[name].append(latency_ms(path, input_shape, batch, threads))
        for name, rs in runs.items():
            facts["latency"].setdefault(name, {})[f"batch{batch}_ms"] = statistics.median(r["median_ms"] for r in rs)
        facts["latency"][f"int8_speedup_batch{batch}"] = round(
            facts["latency"]["fp32"][f"batch{batch}_ms"] / facts["latency"]["int8"][f"batch{batch}_ms"], 3)
    facts["latency"].update(threads=threads, runtime=rs[0]["runtime"], cpu=rs[0]["cpu"])
    return facts


def student_latency(model: nn.Module, input_shape: tuple[int, ...], threads: int = 1,
                    batches: tuple[int, ...] = (1, 64)) -> dict[str, Any]:
    """A network's inference latency as deployed: its fp32 ONNX file in ONNX Runtime (torch when ONNX Runtime is
    absent or the export fails), median ms at each batch size, on `threads` threads."""
    import tempfile

    facts: dict[str, Any] = {"threads": threads}
    with tempfile.TemporaryDirectory(prefix="autokd-latency-") as tmp:
        path = Path(tmp) / "student.onnx"
        try:
            import onnxruntime  # noqa: F401  (only whether it is there)

            target: Path | nn.Module = path if export_onnx(model, input_shape, path, (0.0,) * input_shape[0],
                                                           (1.0,) * input_shape[0]) is None else model
        except ImportError:
            target = model
        for batch in batches:
            r = latency_ms(target, input_shape, batch, threads, repeats=50 if batch == 1 else 10, warmup=5)
            facts[f"batch{batch}_ms"] = r["median_ms"]
            facts.update(runtime=r["runtime"], cpu=r["cpu"])
    return facts
