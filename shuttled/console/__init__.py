"""The operator console (SPEC §14): a web server that is an OPC UA client of the daemon.

Each signed-in person has their own OPC UA session (shuttled.client), so the daemon alone
authorizes and audits what they do; the console keeps no passwords and no accounts. One OPC UA
subscription feeds every browser's live pages (feed.py). It imports nothing of the daemon's
internals (import-linter checks this): it works against any shuttled over the network.
"""
