"""The fault kinds `fastkv chaos` knows (faults.py describes and applies them). A module of their
own so that the command line can name them without importing the injector and its gRPC clients."""

ALL_KINDS = ("kill", "pause", "partition", "oneway", "transfer", "membership", "slowdisk")
NEEDS_PEERS = ("partition", "oneway", "transfer", "membership")
FASTKV_ONLY = ("slowdisk",)
