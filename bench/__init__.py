"""`make bench`: a sink SMSC, a load generator and the gateway, each its own process.

run.py     orchestration, scenarios, the table (`python -m bench.run --help`)
sink.py    the fast sink SMSC (header-only parsing, pre-encoded responses)
loadgen.py the load generator (pre-encoded submit_sm, window per bind, optional pacing)
wire.py    the few SMPP bytes both need; no gateway imports, so they stay cheap
procs.py   child processes: spawn, readiness, /proc CPU time, clean-up
gwprofile.py the gateway under cProfile (`--profile cprofile`)
"""
