"""OPC UA client code shared by the daemon's clients (the operator console; shuttlectl's
`cli/ctl_client.py` has the same session logic with exit codes). Nothing here imports the daemon."""
