"""Suite-wide settings.

`SHUTTLED_TEST_SCRYPT_N` (shuttled/records/users.py) is the one test-only knob of the daemon:
new password hashes cost 2^10 instead of the production 2^17, so the hundreds of accounts and
sign-ins the suite makes take milliseconds, not half a second each. It is set in the environment,
so the console scripts the tests start as subprocesses inherit it. Tests of the password cost
itself remove it (tests/service/test_password_cost.py proves the production cost is 2^17).
"""

from __future__ import annotations

import os

os.environ.setdefault("SHUTTLED_TEST_SCRYPT_N", str(2**10))
