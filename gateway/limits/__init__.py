"""Pure limits: token buckets, cluster shares (values and `now` in, verdicts out; no asyncio)."""
