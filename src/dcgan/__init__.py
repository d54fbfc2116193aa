"""dcgan: the DCGAN paper (Radford, Metz, Chintala 2016), reproduced in PyTorch.

Layers, as in the paper: `models` (G and D, §3), `gan` (losses and one training iteration),
`train` (the loop, run directories, checkpoints), `data`, `sampling`, and the CLI in `cli`.
Importing the package does nothing but define these.
"""

__version__ = "0.1.0"
