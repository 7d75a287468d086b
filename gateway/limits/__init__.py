"""Pure limits: values and `now` in, verdicts out. No sockets, tasks or clock reads.

networks     addresses and CIDRs (allow lists, exemptions); a check that errors denies
lockout      failed binds per source address -> lockout
connections  open application connections, in total and per source address
bucket       token buckets (account and carrier max_tps)
cluster      live gateway instances from heartbeat rows -> each instance's share of a limit
"""
