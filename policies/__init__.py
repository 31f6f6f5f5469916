"""Pure rules shared by the gateway and the connectors: disclosure profiles and disclosure
control. No I/O."""
