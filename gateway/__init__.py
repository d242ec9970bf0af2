"""maas-gateway: the I/O shell around `policies`."""
