"""Image metadata: what frames carry (the web UI's infotext, our settings), bounded."""
