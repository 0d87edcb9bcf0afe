"""Alarms with an ISA-18.2 lifecycle (SPEC §13): the model the views (OPC UA, MQTT) show."""

from shuttled.alarms.book import DEFAULT_MAX_SHELVE_S, AlarmBook
from shuttled.alarms.model import Alarm, AlarmRefused, Transition

__all__ = ["DEFAULT_MAX_SHELVE_S", "Alarm", "AlarmBook", "AlarmRefused", "Transition"]
