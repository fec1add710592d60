"""Real workloads: folders and globs, resume, any image file, huge inputs, interruptions, fuzzing."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.backbones import save_backbone
from adadiffsr.cli import main
from adadiffsr.engine.pipeline import TilingSettings, upscale_tensor
from adadiffsr.engine.sampler import SamplerSettings
from adadiffsr.errors import ConfigError, InputImageError, NumericalError
from adadiffsr.io import read_picture
from adadiffsr.policies.uniform import UniformPolicy

from .conftest import FunctionBackbone, tiny_compact

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_backbone(tiny_compact(), path)
    return path


def photo(size=(20, 14)) -> Image.Image:
    return Image.open(FIXTURES / "chelsea-288.png").convert("RGB").resize(size)


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def upscale_args(weights, *extra):
    return ["--weights", weights, "--steps", "2", "-q", *extra]


def test_folder_run_reports_bad_files_goes_on_and_resumes(capsys, tmp_path, weights):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo().save(src / "a.png")
    photo().save(src / "b.jpg")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    code, err = run(capsys, "upscale", src, "-o", out, "--weights", weights, "--steps", "2")
    assert code == 1
    assert "broken.png" in err and "2 upscaled, 0 skipped, 1 failed, of 3" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    before = (out / "a.png").stat().st_mtime_ns
    code, err = run(capsys, "upscale", src, "-o", out, "--weights", weights, "--steps", "2", "--skip-existing")
    assert code == 1 and "0 upscaled, 2 skipped, 1 failed" in err
    assert (out / "a.png").stat().st_mtime_ns == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_folder_of_subfolders_keeps_its_structure_and_skips_its_own_outputs(capsys, tmp_path, weights):
    src = tmp_path / "archive"
    (src / "2024" / "june").mkdir(parents=True)
    photo().save(src / "top.png")
    photo().save(src / "2024" / "a.png")
    photo().save(src / "2024" / "june" / "a.png")  # the same name in another subfolder: no collision
    out = src / "x4"  # the outputs inside the input folder
    code, err = run(capsys, "upscale", src, "-o", out, "--report", tmp_path / "reports", "--weights", weights,
                    "--steps", "2")
    assert code == 0, err
    assert "3 upscaled, 0 skipped, 0 failed, of 3" in err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["2024/a.png", "2024/june/a.png", "top.png"]
    assert (tmp_path / "reports" / "2024" / "june" / "a.json").is_file()
    code, err = run(capsys, "upscale", src, "-o", out, "--skip-existing", "--weights", weights, "--steps", "2")
    assert code == 0 and "0 upscaled, 3 skipped, 0 failed, of 3" in err  # its own outputs are not inputs


def test_globs_suffix_reports_and_name_collisions(capsys, tmp_path, weights):
    photo().save(tmp_path / "x.png")
    photo().save(tmp_path / "x.jpg")
    photo().save(tmp_path / "y.png")
    out = tmp_path / "out"
    code, err = run(capsys, "upscale", str(tmp_path / "*.png"), "-o", out, "--suffix", "4x", "--ext", "webp",
                    "--report", tmp_path / "reports", *upscale_args(weights))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["x_4x.webp", "y_4x.webp"]
    assert (tmp_path / "reports" / "x_4x.json").is_file()
    code, err = run(capsys, "upscale", tmp_path / "x.png", tmp_path / "x.jpg", "-o", tmp_path / "o2", *upscale_args(weights))
    assert code == 1 and "would replace the output of" in err
    assert run(capsys, "upscale", str(tmp_path / "*.gif"), "-o", out, *upscale_args(weights))[0] == 1


def test_rgba_alpha_is_upscaled_and_kept(capsys, tmp_path, weights):
    image = photo().convert("RGBA")
    alpha = np.zeros((14, 20), dtype=np.uint8)
    alpha[:, 10:] = 255
    image.putalpha(Image.fromarray(alpha))
    image.save(tmp_path / "a.png")
    assert run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", *upscale_args(weights))[0] == 0
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "RGBA" and out.size == (80, 56)
    a = np.asarray(out.getchannel("A"))
    assert a[:, :30].max() < 10 and a[:, 50:].min() > 245
    code, err = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.jpg", *upscale_args(weights))
    assert code == 1 and "alpha" in err and not (tmp_path / "o.jpg").exists()


def test_sixteen_bit_inputs_give_sixteen_bit_outputs(capsys, tmp_path, weights):
    rgb = (np.asarray(photo(), dtype=np.float64) / 255 * 65535).astype(np.uint16) | 3  # low bits set
    with open(tmp_path / "rgb16.png", "wb") as f:
        png.Writer(20, 14, greyscale=False, bitdepth=16).write(f, rgb.reshape(14, 60))
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray16.png")  # I;16
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb)
    picture = read_picture(tmp_path / "rgb16.png")
    assert picture.bits == 16 and np.allclose(picture.rgb * 65535, rgb, atol=0.5)
    for name, out_name in (("rgb16.png", "o1.png"), ("gray16.png", "o2.png"), ("rgb16.tif", "o3.tif")):
        assert run(capsys, "upscale", tmp_path / name, "-o", tmp_path / out_name, *upscale_args(weights))[0] == 0
    w, h, _, info = png.Reader(filename=str(tmp_path / "o1.png")).read()
    assert (w, h, info["bitdepth"], info["greyscale"]) == (80, 56, 16, False)
    assert png.Reader(filename=str(tmp_path / "o2.png")).read()[3]["greyscale"]
    assert tifffile.imread(tmp_path / "o3.tif").dtype == np.uint16
    code, err = main([str(a) for a in ["upscale", tmp_path / "rgb16.png", "-o", tmp_path / "o4.jpg",
                                        "--weights", weights, "--steps", "2"]]), capsys.readouterr().err
    assert code == 0 and "8 bits" in err


def test_modes_gray_palette_cmyk_animation(capsys, tmp_path, weights):
    photo().convert("L").save(tmp_path / "gray.png")
    photo().convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.png")
    photo().convert("CMYK").save(tmp_path / "cmyk.jpg")
    frames = [photo(), photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    results = {}
    for name in ("gray.png", "pal.png", "cmyk.jpg", "anim.gif"):
        out = tmp_path / f"out-{name}.png"
        code, err = run(capsys, "upscale", tmp_path / name, "-o", out, "--weights", weights, "--steps", "2")
        assert code == 0, err
        results[name] = (Image.open(out).mode, err)
    assert results["gray.png"][0] == "L"
    assert results["pal.png"][0] == "RGB"
    assert results["cmyk.jpg"][0] == "RGB" and "CMYK" in results["cmyk.jpg"][1]
    assert "2 frames: only the first" in results["anim.gif"][1]


def test_decompression_bomb_is_refused_with_a_way_out(capsys, tmp_path, weights):
    photo((64, 64)).save(tmp_path / "big.png")
    code, err = run(capsys, "upscale", tmp_path / "big.png", "-o", tmp_path / "o.png", *upscale_args(weights, "--max-pixels", "1000"))
    assert code == 1 and "--max-pixels" in err and err.count("\n") == 1
    with pytest.raises(InputImageError, match="raise it with `max_pixels`") as caught:  # the API's own terms
        read_picture(tmp_path / "big.png", 1000)
    assert "--" not in str(caught.value)
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 100  # a tiny Pillow cap: --max-pixels replaces it, 0 lifts it
        code, err = run(capsys, "upscale", tmp_path / "big.png", "-o", tmp_path / "o.png", *upscale_args(weights, "--max-pixels", "0"))
        assert code == 0, err
        assert Image.MAX_IMAGE_PIXELS == 100  # restored
    finally:
        Image.MAX_IMAGE_PIXELS = old


def test_nan_from_the_backbone_is_a_clear_error():
    backbone = FunctionBackbone(lambda x, t, c: x * float("nan"))
    with pytest.raises(NumericalError, match="NaN"):
        Upscaler(backbone, "cpu")(photo((8, 8)), UpscaleConfig(policy="uniform", interval=500))


def test_streaming_groups_equal_one_group():
    backbone = tiny_compact()
    lr = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0)) * 2 - 1
    args = (backbone, lr, UniformPolicy(250), SamplerSettings(rule="ddpm", batch_tiles=4))
    whole = upscale_tensor(*args, TilingSettings(tile=16), seed=2)
    streamed = upscale_tensor(*args, TilingSettings(tile=16, stream_tiles=3), seed=2)
    assert len(whole.grid) > 6
    assert torch.allclose(whole.image, streamed.image, atol=1e-5)
    assert torch.equal(whole.run.steps, streamed.run.steps) and whole.run.nfe == streamed.run.nfe


def test_auto_batch_tiles(capsys, tmp_path, weights):
    photo().save(tmp_path / "a.png")
    code, err = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", *upscale_args(weights, "--batch-tiles", "auto"))
    assert code == 0, err
    assert run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", *upscale_args(weights, "--batch-tiles", "0"))[0] == 2



def _catches_sigterm(pid: int) -> bool:
    """Whether the process has its own SIGTERM handler yet (Linux's /proc; elsewhere after 5 s)."""
    try:
        masks = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    except OSError:
        time.sleep(5)
        return True
    return bool(int(masks["SigCgt"].strip(), 16) >> (signal.SIGTERM - 1) & 1)

def test_sigterm_leaves_no_partial_output(tmp_path, weights):
    photo((120, 90)).save(tmp_path / "a.png")
    out = tmp_path / "o.png"
    exe = Path(sys.executable).with_name("adadiffsr")
    proc = subprocess.Popen([str(exe), "upscale", str(tmp_path / "a.png"), "-o", str(out), "--weights", str(weights),
                             "--steps", "1000", "--tile", "16"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not _catches_sigterm(proc.pid):
        time.sleep(0.2)  # until the CLI has its handler (imports take seconds on a busy machine)
    time.sleep(2)  # sampling under way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: terminated"
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def _samples() -> dict[str, bytes]:
    image = photo((24, 16))
    out = {}
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("TIFF", "tif"), ("BMP", "bmp"), ("GIF", "gif")):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        out[ext] = buffer.getvalue()
    return out


def test_fuzz_random_and_truncated_bytes_only_raise_input_errors(tmp_path):
    rng = random.Random(0)
    cases = 0
    for ext, data in _samples().items():
        variants = [data[:n] for n in sorted(rng.sample(range(len(data)), 12))]
        for _ in range(12):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 20)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            variants.append(bytes(mutated))
        variants.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 400))))
        for k, blob in enumerate(variants):
            path = tmp_path / f"case{k}.{ext}"
            path.write_bytes(blob)
            try:
                picture = read_picture(path)
            except InputImageError:
                pass
            else:
                assert picture.rgb.ndim == 3 and np.isfinite(picture.rgb).all()
            cases += 1
    assert cases >= 150


def test_fuzzed_files_through_the_cli_give_one_line(capsys, tmp_path, weights):
    data = _samples()["png"]
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    (tmp_path / "noise.jpg").write_bytes(bytes(random.Random(1).randrange(256) for _ in range(300)))
    for name in ("cut.png", "noise.jpg"):
        code, err = run(capsys, "upscale", tmp_path / name, "-o", tmp_path / "o.png", *upscale_args(weights))
        assert code == 1 and err.count("\n") == 1 and err.startswith("error:")
        assert not (tmp_path / "o.png").exists()


def test_auto_batch_tiles_follows_the_backbones_own_memory(monkeypatch):
    """Not CompactSR's figure for every backbone: a backbone that declares 4x the bytes per element
    gets a quarter of the tiles, and one that declares none is refused on a CPU in one line."""
    from dataclasses import replace

    from adadiffsr.engine import memory

    from .conftest import tiny_compact

    device = torch.device("cpu")
    small = tiny_compact()
    heavy, unknown = tiny_compact(), tiny_compact()
    heavy.spec = replace(small.spec, bytes_per_element=4 * small.spec.bytes_per_element)
    unknown.spec = replace(small.spec, bytes_per_element=None)
    one_tile = 16 * 16 * small.spec.latent_channels * small.spec.bytes_per_element
    monkeypatch.setattr(memory, "free_memory", lambda device: 4 * 512 * one_tile)  # a quarter holds 512 tiles
    assert memory.auto_batch_tiles(small, 16, device, cap=1000) == 512
    assert memory.auto_batch_tiles(heavy, 16, device, cap=1000) == 128
    assert memory.auto_batch_tiles(small, 16, device) == 64  # capped
    with pytest.raises(ConfigError, match="does not declare"):
        memory.auto_batch_tiles(unknown, 16, device)
