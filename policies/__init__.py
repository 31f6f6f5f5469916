"""Pure rules shared by the gateway and the connectors: the legal policy model, its composition
and decisions, and disclosure control. Only `policies.loader` touches the disk (policy files);
nothing here does network I/O."""
