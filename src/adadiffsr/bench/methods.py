"""The methods a benchmark compares, parsed from specs like ``uniform:interval=5,rule=ddpm``.

Every method maps a ``(1, 3, H, W)`` input in ``[0, 1]`` to its x4 output in ``[0, 1]`` and says
how many tile evaluations (NFE) it spent (0 for non-diffusion methods).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch.nn.functional as F
from torch import Tensor

from ..core.pixels import denormalize, normalize
from ..errors import ConfigError


class Method(Protocol):
    label: str

    def __call__(self, lr: Tensor) -> tuple[Tensor, int]: ...


@dataclass
class Bicubic:
    label: str = "bicubic"

    def __call__(self, lr: Tensor) -> tuple[Tensor, int]:
        return F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1), 0


@dataclass
class RealESRGAN:
    """Real-ESRGAN x4plus as a peer (the same ``Prior`` the default model uses where a region needs it):
    the PyTorch RRDBNet over 256-pixel tiles in the bench's dtype (``auto``: bf16 on a CPU with bf16
    instructions, its fastest way there; labelled ``realesrgan-bf16``), or the same weights in the ncnn
    runtime (``realesrgan:runtime=ncnn``), or in ONNX Runtime from the default model's export
    (``runtime=onnx``)."""

    model: Any
    label: str = "realesrgan"

    def __call__(self, lr: Tensor) -> tuple[Tensor, int]:
        return denormalize(self.model(normalize(lr))), 0  # the Prior: [-1, 1] in and out


@dataclass
class Engine:
    """A sampler configuration of the diffusion engine over the loaded backbone."""

    upscaler: Any
    config: Any
    label: str
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # of the last call: prior, sampling, ...

    def __call__(self, lr: Tensor) -> tuple[Tensor, int]:
        out = self.upscaler.run(normalize(lr.to(self.upscaler.device)), self.config)
        self.stage_seconds = dict(out.seconds)
        return denormalize(out.image.float().cpu()).clamp(0, 1), out.run.nfe


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``'uniform:interval=5,rule=ddpm'`` -> ``('uniform', {'interval': '5', 'rule': 'ddpm'})``."""
    name, _, rest = spec.strip().partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"method {spec!r}: expected key=value, got {item!r}")
        params[key.strip().replace("-", "_")] = value.strip()
    return name.strip(), params


def split_methods(text: str) -> list[str]:
    """Split a ``--methods`` list on commas that start a new method (``a:x=1,y=2,b`` -> 2 methods)."""
    methods: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" in part and ":" not in part and methods:
            methods[-1] += "," + part
        else:
            methods.append(part)
    return methods


def build_methods(specs: list[str], weights: str | None, device: str, dtype: str,
                  runtime: str = "torch") -> list[Method]:
    """Instantiate every method once (models loaded once per runtime, shared by the engine methods).
    An engine method's ``runtime=torch|onnx`` and ``dtype=fp32|bf16|fp16`` settings override
    ``runtime`` and ``dtype`` for it."""
    from ..api import Upscaler, auto_dtype
    from ..backbones import DEFAULT_BACKBONE
    from ..config import OPTION_ALIASES, UpscaleConfig
    from ..devices import DTYPE_CHOICES, DTYPES, resolve_device
    from ..policies.registry import POLICIES
    from ..runtime import RUNTIMES

    methods: list[Method] = []
    upscalers: dict[str, Upscaler] = {}
    fields = UpscaleConfig.option_fields()  # every option by its flat name, the parts' included
    for spec in specs:
        name, params = parse_spec(spec)
        if name == "bicubic" and not params:
            methods.append(Bicubic())
        elif name == "realesrgan" and set(params) <= {"runtime", "dtype"}:
            prior_runtime = params.get("runtime", "torch")
            if prior_runtime not in ("torch", "ncnn", "onnx"):
                raise ConfigError(f"method {spec!r}: runtime must be torch, ncnn or onnx")
            # its fastest way here: PyTorch in the dtype ``auto`` picks (bf16 on a CPU with bf16 instructions)
            peer_dtype = params.get("dtype", dtype)
            if peer_dtype not in DTYPE_CHOICES or (prior_runtime != "torch" and peer_dtype not in ("auto", "fp32")):
                raise ConfigError(f"method {spec!r}: dtype must be one of {', '.join(DTYPE_CHOICES)} (fp32 outside torch)")
            if prior_runtime == "onnx":  # the default model's export of the same weights
                upscalers["onnx-fp32"] = (upscalers.get("onnx-fp32")
                                          or Upscaler.from_pretrained(weights, device=device, runtime="onnx"))
                prior = upscalers["onnx-fp32"].backbone.prior
                if prior is None or prior.info.name != "realesrgan-x4plus":
                    raise ConfigError(f"method {spec!r}: the model's prior is not Real-ESRGAN x4plus")
            else:
                from ..prior import load_prior

                where = resolve_device(device)
                prior = load_prior("realesrgan-x4plus", runtime=prior_runtime).to(where)
                if prior_runtime == "torch":
                    resolved = auto_dtype(where, "torch", DEFAULT_BACKBONE) if peer_dtype == "auto" else peer_dtype
                    prior.use_dtype(DTYPES[resolved])
                    peer_dtype = resolved
            label = "realesrgan" if prior_runtime == "torch" else f"realesrgan-{prior_runtime}"
            methods.append(RealESRGAN(prior, label=label + (f"-{peer_dtype}" if prior_runtime == "torch" else "")))
        elif name in POLICIES:
            engine_runtime, engine_dtype = params.pop("runtime", runtime), params.pop("dtype", dtype)
            engine_weights = params.pop("weights", weights)  # a candidate model (its companions beside it)
            if engine_runtime not in RUNTIMES:
                raise ConfigError(f"method {spec!r}: runtime must be one of {', '.join(RUNTIMES)}")
            loaded = f"{engine_runtime}-{engine_dtype}-{engine_weights}"
            if loaded not in upscalers:
                upscalers[loaded] = Upscaler.from_pretrained(engine_weights, device=device, dtype=engine_dtype,
                                                             runtime=engine_runtime)
            upscaler = upscalers[loaded]
            ran_dtype = next(k for k, v in DTYPES.items() if v == upscaler.dtype)  # "auto" as resolved
            values: dict[str, Any] = {"policy": name}
            for key, raw in params.items():
                key = OPTION_ALIASES.get(key, key)
                if key not in fields or key in ("policy", "outscale"):
                    raise ConfigError(f"method {spec!r}: unknown setting {key!r}")
                if key in ("intervals", "timesteps", "student_groups"):
                    values[key] = tuple(int(v) for v in raw.split("/"))  # intervals=5/10/15/20
                elif key == "thresholds":
                    values[key] = tuple(_convert(v, float) for v in raw.split("/"))
                else:
                    values[key] = _convert(raw, fields[key].type)
            config = UpscaleConfig(**values)
            named = spec if engine_weights == weights else spec.replace(str(engine_weights), Path(str(engine_weights)).parent.name)
            # a label names a folder of --save-images: lists (1/2/3) are joined by "+", not "/"
            label = named.replace(":", "-").replace(",", "-").replace("=", "").replace("/", "+")
            label += "".join(f"-{value}" for value, default, setting in ((engine_runtime, "torch", "runtime="),
                                                                          (ran_dtype, "fp32", "dtype="))
                             if value != default and setting not in spec)
            methods.append(Engine(upscaler, config, label=label))
        else:
            known = ", ".join(["bicubic", "realesrgan", *POLICIES])
            raise ConfigError(f"unknown method {spec!r}; known: {known} (engine ones take key=value settings)")
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"methods repeat: {', '.join(labels)}")
    return methods


def _convert(raw: str, annotation: Any) -> Any:
    text = str(annotation)
    if "bool" in text:
        if raw.lower() == "none" and "None" in text:
            return None
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"bad value {raw!r} (true or false)")
        return raw.lower() in ("true", "1")
    try:
        if "int" in text and "float" not in text:
            return None if raw.lower() == "none" and "None" in text else int(raw)
        if "float" in text:
            return None if raw.lower() == "none" and "None" in text else float(raw)
    except ValueError as e:
        raise ConfigError(f"bad value {raw!r} ({e})") from e
    return raw

