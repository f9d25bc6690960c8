"""LORD and OverLORD: class/content disentanglement and image translation in PyTorch."""

__version__ = "0.1.0"
