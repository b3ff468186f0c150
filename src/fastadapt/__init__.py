"""fastadapt: meta-reinforcement learning on gymnasium 1.x and PyTorch 2.x."""

__version__ = "0.1.0"
