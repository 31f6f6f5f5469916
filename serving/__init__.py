"""The shell every Tessera service runs in, the gateway and the connectors alike: settings
read from the environment (`serving.settings`), liveness, readiness and shutdown
(`serving.lifecycle`), and binding, serving and freezing the heap (`serving.run`). What a
service does lives in its own package; how it is started, probed and stopped lives here, once.
The private keys a service signs or pools with are loaded by `trust.private_keys`."""
