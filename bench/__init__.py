"""`make bench`: a sink SMSC, a load generator and the gateway, each its own process.

run.py     orchestration, scenarios, the table (`python -m bench.run --help`)
sink.py    the fast sink SMSC (header-only parsing, pre-encoded responses)
loadgen.py the load generator (pre-encoded submit_sm, window per bind, optional pacing)
wire.py    the few SMPP bytes both need; no gateway imports, so they stay cheap
procs.py   child processes: spawn, readiness, /proc CPU time, clean-up
gwprofile.py the gateway under cProfile (`--profile cprofile`)
optout_scenarios.py  the blocks, mo and propagation scenarios (issues 3 and 4)
blocks.py  block generators (the realistic spread), bulk fill via Store.import_blocks, VmRSS, log lines
mo.py      MO-injecting SMSC, receiver application, refusal probe (`python -m bench.mo --help`)
index_bench.py  BlockIndex memory/load/lookup at 1M (and --scale N), two layouts; the CSV import figure
index_candidates.py  the index candidates side by side (cykhash, numpy+rbloom, roaring, set)
"""
