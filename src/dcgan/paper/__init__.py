"""The paper's experiments (§5-§6 of Radford et al. 2016), each a library function and a command.

Each experiment module has one `run_*` function that takes its inputs (G or D, config, data,
options) and returns its figures and results (`common.Outcome`); `dcgan paper X` and the
report both call it.

- `samples`: the numbered sample grid the other experiments refer to.
- `features`: D as a fixed feature extractor + linear L2-SVM (§5.1), with the paper's baselines.
- `walk`: latent space walks, linear and spherical (§6.1).
- `arithmetic`: vector arithmetic on averaged z, and a direction applied with growing strength (§6.3).
- `filters`: guided backpropagation of D's last conv features, trained vs random D (§6.2, Fig. 5).
- `forget`: dropping the G feature maps a logistic regression ties to marked regions (§6.2.2).
- `report`: all of the above, seeded, saved as results.json; `render` turns that into report.md.
- `constants`: the fixed names and numbers (torch-free, for the CLI's parser).

Importing this package does no work.
"""
