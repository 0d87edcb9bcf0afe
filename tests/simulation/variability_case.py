"""The case every patient-variability test analyses: short_expansion.yaml, seed 1, 4 patients.

Seed 1 seeds patients 0, 1 and 3 below the protocol's dose (they end HELD) and patient 2 above
it (COMPLETE): a share strictly between 0 and 1, and both short and eight-hour runs to schedule.
"""

from pathlib import Path

SHORT = Path(__file__).with_name("short_expansion.yaml")
SEED = 1
PATIENTS = 4
