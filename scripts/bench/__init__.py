"""The speed benchmark (``python scripts/benchmark.py [--help]``): a tool kept beside the package, not in it.

One module per part, each candidate of a part interleaved round by round in one process so that a
shared or throttled CPU slows them alike:

- ``training``: a training step of our UNet per upsample mode against a peer network (MONAI's
  ``BasicUNet``; the pairings table there takes more), per image and per FLOP, repeated;
- ``machine``: the machine itself (CPU, versions) and its own limit, fp32 GEMM and 3x3 convolution
  FLOP/s, measured within the training rounds;
- ``lightning_loop``: real ``train.py`` runs against a plain PyTorch loop;
- ``pipeline``: the data pipeline alone; ``inference``: the ``predict.py`` path, fused BatchNorm;
- ``timing``: interleaved rounds, medians, peak memory, FLOP and host-sync counting, the
  ``StepTimer`` callback loaded into ``train.py`` runs; ``report``: table, targets, JSON;
  ``cli``: the command line.
"""
