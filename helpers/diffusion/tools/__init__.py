"""The diffusion engine's image tools: inpaint (a mask, or words through CLIPSeg: `mask_words`),
outpaint (the canvas grown by `borders`), and ControlNet (`control`). Each prepares what the
sampler needs at the check stage and wraps the sampler's model; none saves or prints."""
