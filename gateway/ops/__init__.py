"""What operators read: Prometheus metrics, structured logs, the access log, misuse counts.

Leaf modules any other subpackage may import. May import: policies, gateway.config,
gateway.errors only.
"""
