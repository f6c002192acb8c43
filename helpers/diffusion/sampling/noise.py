"""Random numbers as the web UI draws them: one generator per image, from its seed.

The start noise is each image's first draw and every later draw (an ancestral sampler's step
noise) comes from the same generator, so an image depends on its seed alone, whatever batch it
was made in. The source is the web UI's RNG setting:
- "cpu": torch's CPU generator: the same numbers on every machine (the default here);
- "gpu": the device's own generator (on a CPU or Apple device: the CPU's);
- "nv": NVIDIA's GPU generator reproduced on any device: Philox 4x32-10 counters (Salmon et al.
  2011, "Parallel random numbers: as easy as 1, 2, 3") through a Box-Muller transform, as
  `torch.randn` on a CUDA device makes them.
SDE samplers draw their noise from a Brownian tree (torchsde) seeded by each image's seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # round multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # key increments (Weyl sequence)
TWO_POW_32_INV = float(np.float32(2.3283064e-10))  # float32 constants as CUDA's curand has them
TWO_POW_32_INV_2PI = float(np.float32(2.3283064e-10 * 6.2831855))
MASK32 = np.uint64(0xFFFFFFFF)

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (sigma, sigma_next) -> noise


def philox(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Philox 4x32: `counter` (4, n) and `key` (2, n) of uint64 holding 32-bit words."""
    c0, c1, c2, c3 = (counter[i].copy() for i in range(4))
    k0, k1 = key[0].copy(), key[1].copy()
    for done in range(rounds):
        p0, p1 = c0 * np.uint64(PHILOX_M[0]), c2 * np.uint64(PHILOX_M[1])
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & MASK32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & MASK32)
        if done < rounds - 1:
            k0 = (k0 + np.uint64(PHILOX_W[0])) & MASK32
            k1 = (k1 + np.uint64(PHILOX_W[1])) & MASK32
    return np.stack([c0, c1, c2, c3])


def philox_normal(seed: int, offset: int, shape: Sequence[int]) -> torch.Tensor:
    """`shape` standard normal numbers as CUDA's `torch.randn` makes them for a seed, at the
    generator's `offset`-th call (one Box-Muller value from each counter)."""
    n = int(np.prod(shape))
    counter = np.zeros((4, n), dtype=np.uint64)
    counter[0] = offset
    counter[2] = np.arange(n, dtype=np.uint64)
    key = np.array([[seed & 0xFFFFFFFF], [(seed >> 32) & 0xFFFFFFFF]], dtype=np.uint64)
    words = philox(counter, np.repeat(key, n, axis=1))
    u = words[0].astype(np.float64) * TWO_POW_32_INV + TWO_POW_32_INV / 2
    v = words[1].astype(np.float64) * TWO_POW_32_INV_2PI + TWO_POW_32_INV_2PI / 2
    normal = (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)
    return torch.from_numpy(normal.reshape(tuple(shape)))


class PhiloxGenerator:
    """A generator that gives, on any device, the numbers an NVIDIA GPU gives for a seed."""

    def __init__(self, seed: int):
        self.seed, self.offset = int(seed), 0

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        """The next draw of `shape` numbers."""
        numbers = philox_normal(self.seed, self.offset, shape)
        self.offset += 1
        return numbers


class ImageNoise:
    """Each image's own random numbers: `first()` is the start noise, `next()` every later
    draw, both (images, *shape) float32 on `device`."""

    def __init__(self, seeds: Sequence[int], shape: Sequence[int], source: str = "cpu",
                 device: Any = "cpu"):
        self.shape, self.source, self.device = tuple(shape), source, torch.device(device)
        self.generators = [self._generator(int(s)) for s in seeds]

    def _generator(self, seed: int) -> Any:
        if self.source == "nv":
            return PhiloxGenerator(seed)
        where = self.device if self.source == "gpu" and self.device.type == "cuda" else "cpu"
        return torch.Generator(where).manual_seed(seed)

    def _draw(self, generator: Any) -> torch.Tensor:
        if isinstance(generator, PhiloxGenerator):
            return generator.randn(self.shape)
        return torch.randn(self.shape, generator=generator, device=generator.device)

    def first(self) -> torch.Tensor:
        """The start noise of every image."""
        return self.next()

    def next(self) -> torch.Tensor:
        """The next draw of every image."""
        return torch.stack([self._draw(g) for g in self.generators]).to(self.device)

    def sampler(self) -> NoiseSampler:
        """Step noise for ancestral samplers: each image's next draw."""
        return lambda _sigma, _sigma_next: self.next()


def brownian(x: torch.Tensor, sigmas: torch.Tensor, seeds: Sequence[int]) -> NoiseSampler:
    """Step noise for SDE samplers: increments of a Brownian tree per image (torchsde), over
    the run's positive sigmas, scaled to unit variance."""
    import torchsde

    positive = sigmas[sigmas > 0]
    low, high = torch.as_tensor(positive.min()), torch.as_tensor(sigmas.max())
    w0 = torch.zeros_like(x[0])
    trees = [torchsde.BrownianTree(low, w0, high, entropy=int(s)) for s in seeds]

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        t0, t1, sign = (a, b, 1) if a < b else (b, a, -1)
        w = torch.stack([tree(t0, t1) for tree in trees]) * sign
        return w / (b - a).abs().sqrt()

    return sample
