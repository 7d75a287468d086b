"""Pure limits: token buckets (bucket.py), cluster shares (cluster.py). Values and `now` in,
verdicts out; no sockets, tasks or clock reads here."""
