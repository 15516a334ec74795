"""The speed benchmark (``python scripts/benchmark.py [--help]``): a tool kept beside the package, not in it. One
module per part, the shared code in ``timing`` (measuring), ``runs`` (train.py subprocesses), ``config`` (what
train.py builds) and ``report``; docs/performance.md says what each part measures."""
