"""`fastkv chaos`: fault injection against any etcd-API cluster, and the checkers that judge it.

Pieces, bottom up:
  history    -- one recorded operation (call/return times, outcome) and JSON-lines files of them
  linearize  -- per-key linearizability checker (Wing & Gong search, Lowe's memoization)
  watchcheck -- watch guarantees (ordered, no gaps, no duplicates, every acknowledged write seen)
  cluster    -- launchers for etcd / fastkv members on loopback (etcd's flags), always torn down
  netfault   -- per-member peer proxies that cut links between chosen members
  faults     -- seeded fault schedule and its injectors (kill, pause, partition, ...)
  workload   -- concurrent clients and watchers that record the history
  runner     -- one chaos run end to end, and the verdict
  cli        -- the `fastkv chaos` subcommand
"""
