"""Fixtures of the MQTT tests; the broker, historian and daemon helpers are in mqtt_rig.py."""

from mqtt_rig import broker, daemons, subscribe  # noqa: F401  (pytest fixtures)
