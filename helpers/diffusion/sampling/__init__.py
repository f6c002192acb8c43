"""The web UI's sampling: k-diffusion samplers over a CompVis-style denoiser, its schedule types
and its noise, so the same seed and settings give the image a web UI user knows.

- `denoiser`: the model's discrete sigmas (from its training betas), sigma <-> fractional
  timestep, eps / v prediction, and classifier-free guidance combined on the denoised images as
  the web UI does (composable pieces each with their weight);
- `schedules`: the schedule types (Uniform, Karras, Exponential, ...), whatever the model's
  scheduler config says about timestep spacing;
- `noise`: random numbers as the web UI's RNG sources (cpu, gpu, nv) per image, and the
  Brownian-tree noise of its SDE samplers;
- `samplers`: one short function per sampler, `fn(model, x, sigmas, noise, callback)`;
- `run`: a batch from conditioning to latents (txt2img, img2img, a given start noise).

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"
(arXiv:2206.00364); Lu et al. 2022, "DPM-Solver++" (arXiv:2211.01095).
"""
