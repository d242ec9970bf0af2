"""The running gateway as a whole: health (probe and endpoints), reload (SIGHUP, file
changes), drain (SIGTERM during a deploy).

May import everything below gateway.app: policies, config, errors, ops, store, limits,
serving, accounts, state.
"""
