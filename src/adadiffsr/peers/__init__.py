"""Non-diffusion methods the benchmark compares against: bicubic and Real-ESRGAN x4plus."""
